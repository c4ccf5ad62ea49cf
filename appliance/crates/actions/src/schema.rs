//! The native action schema: one tagged union (`{"action": "left_click", "x": 10, "y": 20}`)
//! covering every desktop and browser action, the batch request around it, and the results.
//!
//! Coordinates are screen pixels of the session's X display (origin top-left). Unknown actions
//! and unknown fields are rejected when the request is parsed, before anything runs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

/// A point on the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

/// A mouse button.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MouseButton {
    #[default]
    Left,
    Right,
    Middle,
    /// Browser "back" side button.
    Back,
    /// Browser "forward" side button.
    Forward,
}

/// A scroll direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScrollDirection {
    Up,
    Down,
    Left,
    Right,
}

/// Screenshot encoding.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    #[default]
    Png,
    #[serde(alias = "jpg")]
    Jpeg,
    Webp,
}

/// Screenshot scaling: a factor in (0, 1] (`0.5`), a named size (`"xga"` = 1024×768,
/// `"wxga"` = 1280×800, `"fwxga"` = 1366×768), or an exact `"WIDTHxHEIGHT"` (`"1024x640"`).
/// Coordinates in the returned `scale` info map image pixels back to the screen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(untagged)]
pub enum ScaleSpec {
    Factor(f64),
    Named(String),
}

/// How to capture a screenshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScreenshotSpec {
    /// png (default), jpeg or webp (lossless).
    #[serde(default)]
    pub format: Option<ImageFormat>,
    /// JPEG quality 1–100 (default 80).
    #[serde(default)]
    pub quality: Option<u8>,
    /// Optional downscaling (see [`ScaleSpec`]).
    #[serde(default)]
    pub scale: Option<ScaleSpec>,
    /// Draw the pointer into the image.
    #[serde(default)]
    pub cursor: Option<bool>,
}

/// One action. `x`/`y` are screen pixels; where they are optional the action happens at the
/// current pointer position. `modifiers` is a key combo (`"shift"`, `"ctrl+alt"`) held during
/// a click or scroll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Move the pointer to (x, y) (with `modifiers` held during the move when given).
    MouseMove {
        x: i32,
        y: i32,
        #[serde(default)]
        modifiers: Option<String>,
    },
    /// Left click (at x, y when given).
    LeftClick {
        #[serde(default)]
        x: Option<i32>,
        #[serde(default)]
        y: Option<i32>,
        #[serde(default)]
        modifiers: Option<String>,
    },
    /// Right click.
    RightClick {
        #[serde(default)]
        x: Option<i32>,
        #[serde(default)]
        y: Option<i32>,
        #[serde(default)]
        modifiers: Option<String>,
    },
    /// Middle click.
    MiddleClick {
        #[serde(default)]
        x: Option<i32>,
        #[serde(default)]
        y: Option<i32>,
        #[serde(default)]
        modifiers: Option<String>,
    },
    /// Left double click.
    DoubleClick {
        #[serde(default)]
        x: Option<i32>,
        #[serde(default)]
        y: Option<i32>,
        #[serde(default)]
        modifiers: Option<String>,
    },
    /// Left triple click (selects a line/paragraph).
    TripleClick {
        #[serde(default)]
        x: Option<i32>,
        #[serde(default)]
        y: Option<i32>,
        #[serde(default)]
        modifiers: Option<String>,
    },
    /// Any button, 1–3 clicks.
    Click {
        #[serde(default)]
        x: Option<i32>,
        #[serde(default)]
        y: Option<i32>,
        #[serde(default)]
        button: MouseButton,
        /// 1 (default), 2 or 3.
        #[serde(default)]
        count: Option<u32>,
        #[serde(default)]
        modifiers: Option<String>,
    },
    /// Press a button (at x, y when given) and keep it down.
    MouseDown {
        #[serde(default)]
        x: Option<i32>,
        #[serde(default)]
        y: Option<i32>,
        #[serde(default)]
        button: MouseButton,
    },
    /// Release a button (at x, y when given).
    MouseUp {
        #[serde(default)]
        x: Option<i32>,
        #[serde(default)]
        y: Option<i32>,
        #[serde(default)]
        button: MouseButton,
    },
    /// Press at the first point, move through the others, release at the last (≥ 2 points).
    Drag {
        path: Vec<Point>,
        #[serde(default)]
        button: MouseButton,
        #[serde(default)]
        modifiers: Option<String>,
    },
    /// Scroll `amount` wheel notches (default 3) in a direction, at (x, y) when given.
    Scroll {
        #[serde(default)]
        x: Option<i32>,
        #[serde(default)]
        y: Option<i32>,
        direction: ScrollDirection,
        #[serde(default)]
        amount: Option<u32>,
        #[serde(default)]
        modifiers: Option<String>,
    },
    /// Press and release keys, xdotool style: `"ctrl+a"`, `"Return"`, `"ctrl+a Delete"`.
    Key { keys: String },
    /// Hold one combo down for `duration_ms`, then release it.
    HoldKey { keys: String, duration_ms: u64 },
    /// Type Unicode text (layout-independent), optionally `delay_ms` after each character.
    Type {
        text: String,
        #[serde(default)]
        delay_ms: Option<u64>,
    },
    /// Sleep `duration_ms` (at most 60000).
    Wait { duration_ms: u64 },
    /// Report the pointer position.
    CursorPosition {},
    /// Capture the screen.
    Screenshot {
        #[serde(default)]
        format: Option<ImageFormat>,
        #[serde(default)]
        quality: Option<u8>,
        #[serde(default)]
        scale: Option<ScaleSpec>,
        #[serde(default)]
        cursor: Option<bool>,
    },
    /// Capture the screen rectangle `region` = `[x0, y0, x1, y1]` (x0 < x1 ≤ screen width,
    /// y0 < y1 ≤ screen height; x1/y1 exclusive) from a fresh screenshot, scaled to exactly
    /// `width`×`height` (both or neither; default: the region scaled to fit the screen,
    /// aspect ratio kept).
    Zoom {
        region: [i32; 4],
        #[serde(default)]
        width: Option<u32>,
        #[serde(default)]
        height: Option<u32>,
        #[serde(default)]
        format: Option<ImageFormat>,
        #[serde(default)]
        quality: Option<u8>,
    },
    /// Read the clipboard as text.
    ClipboardGet {},
    /// Put text on the clipboard.
    ClipboardSet { text: String },
    /// Change the display size (RandR).
    Resize { width: u32, height: u32 },
    /// Open a URL in the active tab (http/https/about:blank; the session's domain allowlist
    /// applies) and wait for it to load.
    Navigate { url: String },
    /// Go back in the active tab's history.
    Back {},
    /// Go forward in the active tab's history.
    Forward {},
    /// Reload the active tab.
    Reload {},
    /// Wait until the active tab has finished loading (default timeout 30000 ms).
    WaitForLoad {
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// List the tabs.
    TabList {},
    /// Open a new tab (at `url` when given) and make it active.
    TabNew {
        #[serde(default)]
        url: Option<String>,
    },
    /// Make a tab active (brings it to the front).
    TabSwitch { id: String },
    /// Close a tab.
    TabClose { id: String },
    /// The readable text of the active tab (at most `max_chars`, default 20000).
    PageText {
        #[serde(default)]
        max_chars: Option<usize>,
    },
    /// Interactive elements, headings and landmarks of the active tab with roles, names and
    /// screen boxes (at most `max_nodes`, default 300).
    A11ySnapshot {
        #[serde(default)]
        max_nodes: Option<usize>,
    },
}

impl Action {
    /// The action's name as it appears in the `action` tag.
    pub fn name(&self) -> &'static str {
        match self {
            Action::MouseMove { .. } => "mouse_move",
            Action::LeftClick { .. } => "left_click",
            Action::RightClick { .. } => "right_click",
            Action::MiddleClick { .. } => "middle_click",
            Action::DoubleClick { .. } => "double_click",
            Action::TripleClick { .. } => "triple_click",
            Action::Click { .. } => "click",
            Action::MouseDown { .. } => "mouse_down",
            Action::MouseUp { .. } => "mouse_up",
            Action::Drag { .. } => "drag",
            Action::Scroll { .. } => "scroll",
            Action::Key { .. } => "key",
            Action::HoldKey { .. } => "hold_key",
            Action::Type { .. } => "type",
            Action::Wait { .. } => "wait",
            Action::CursorPosition {} => "cursor_position",
            Action::Screenshot { .. } => "screenshot",
            Action::Zoom { .. } => "zoom",
            Action::ClipboardGet {} => "clipboard_get",
            Action::ClipboardSet { .. } => "clipboard_set",
            Action::Resize { .. } => "resize",
            Action::Navigate { .. } => "navigate",
            Action::Back {} => "back",
            Action::Forward {} => "forward",
            Action::Reload {} => "reload",
            Action::WaitForLoad { .. } => "wait_for_load",
            Action::TabList {} => "tab_list",
            Action::TabNew { .. } => "tab_new",
            Action::TabSwitch { .. } => "tab_switch",
            Action::TabClose { .. } => "tab_close",
            Action::PageText { .. } => "page_text",
            Action::A11ySnapshot { .. } => "a11y_snapshot",
        }
    }

    /// True for actions served by Chrome over CDP (the rest go to the X display).
    pub fn is_browser(&self) -> bool {
        matches!(
            self,
            Action::Navigate { .. }
                | Action::Back {}
                | Action::Forward {}
                | Action::Reload {}
                | Action::WaitForLoad { .. }
                | Action::TabList {}
                | Action::TabNew { .. }
                | Action::TabSwitch { .. }
                | Action::TabClose { .. }
                | Action::PageText { .. }
                | Action::A11ySnapshot { .. }
        )
    }

    /// The action as JSON for the action log: typed text as `typed` allows, string fields
    /// holding a secret placeholder ([`crate::SECRET_MARKER`]) replaced, never logged.
    pub fn log_json(&self, typed: &dyn crate::TypedText) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        let typed_fields = self.typed_fields();
        if let Some(obj) = v.as_object_mut() {
            for (key, val) in obj.iter_mut() {
                let Value::String(s) = val else { continue };
                if s.contains(crate::SECRET_MARKER) {
                    // The hook for secrets: a field naming one is never logged, whatever the
                    // typed-text policy says.
                    *val = json!({"secret": "not logged"});
                } else if typed_fields.contains(&key.as_str()) {
                    *val = typed.log_value(s);
                }
            }
        }
        v
    }

    /// The input fields that carry text typed or pasted into the desktop (the log shows
    /// them only as the [`crate::TypedText`] policy allows).
    pub fn typed_fields(&self) -> &'static [&'static str] {
        match self {
            Action::Type { .. } | Action::ClipboardSet { .. } => &["text"],
            _ => &[],
        }
    }
}

/// A batch: actions run in order under the session's input lock, stopping at the first
/// failure; optionally a screenshot after the last action that ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub actions: Vec<Action>,
    /// Take a screenshot after the last action (also when the batch stopped early).
    #[serde(default)]
    pub screenshot: Option<ScreenshotSpec>,
}

/// Most actions one batch may hold.
pub const MAX_BATCH: usize = 200;

impl BatchRequest {
    /// Parses a request body: either a batch `{"actions": [...], "screenshot": {...}}` or one
    /// action object `{"action": "...", ...}`. Error messages name the offending action.
    pub fn from_json(body: &[u8]) -> Result<BatchRequest, crate::ActionError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| crate::ActionError::BadRequest(format!("body is not JSON: {e}")))?;
        Self::from_value(v)
    }

    /// Like [`BatchRequest::from_json`] from a parsed value.
    pub fn from_value(v: Value) -> Result<BatchRequest, crate::ActionError> {
        let Value::Object(mut obj) = v else {
            return Err(crate::ActionError::BadRequest(
                "expected a JSON object: one action or {\"actions\": [...]}".into(),
            ));
        };
        if obj.contains_key("action") {
            let a = parse_action(Value::Object(obj), 0)?;
            return Ok(BatchRequest {
                actions: vec![a],
                screenshot: None,
            });
        }
        let Some(actions) = obj.remove("actions") else {
            return Err(crate::ActionError::BadRequest(
                "missing \"action\" (one action) or \"actions\" (a batch)".into(),
            ));
        };
        let screenshot = match obj.remove("screenshot") {
            None | Some(Value::Null) => None,
            Some(s) => Some(
                serde_json::from_value::<ScreenshotSpec>(s)
                    .map_err(|e| crate::ActionError::BadRequest(format!("screenshot: {e}")))?,
            ),
        };
        if let Some(k) = obj.keys().next() {
            return Err(crate::ActionError::BadRequest(format!(
                "unknown field {k:?} (expected \"actions\", \"screenshot\")"
            )));
        }
        let Value::Array(items) = actions else {
            return Err(crate::ActionError::BadRequest(
                "\"actions\" must be an array".into(),
            ));
        };
        if items.is_empty() {
            return Err(crate::ActionError::BadRequest(
                "\"actions\" is empty".into(),
            ));
        }
        if items.len() > MAX_BATCH {
            return Err(crate::ActionError::BadRequest(format!(
                "a batch holds at most {MAX_BATCH} actions"
            )));
        }
        let actions = items
            .into_iter()
            .enumerate()
            .map(|(i, v)| parse_action(v, i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BatchRequest {
            actions,
            screenshot,
        })
    }
}

/// Parses one action object, with an error that names the index and the action.
pub fn parse_action(v: Value, index: usize) -> Result<Action, crate::ActionError> {
    let name = v
        .get("action")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_default();
    serde_json::from_value::<Action>(v).map_err(|e| crate::ActionError::Invalid {
        index,
        code: if name.is_empty() || e.to_string().contains("unknown variant") {
            crate::ErrorCode::UnknownAction
        } else {
            crate::ErrorCode::InvalidAction
        },
        message: if name.is_empty() {
            format!("action {index}: missing \"action\" name ({e})")
        } else {
            format!("action {index} ({name}): {e}")
        },
    })
}

/// The screenshot scale info: how image pixels map to the screen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct ScaleOut {
    /// The captured screen rectangle.
    pub source_x: i32,
    pub source_y: i32,
    pub source_width: u32,
    pub source_height: u32,
    /// Image size.
    pub width: u32,
    pub height: u32,
}

/// An encoded image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct ImageOut {
    /// MIME type (`image/png`, `image/jpeg`, `image/webp`).
    pub mime: String,
    pub width: u32,
    pub height: u32,
    /// Base64 (standard alphabet) of the image file.
    pub data: String,
    pub scale: ScaleOut,
}

/// What an action returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Output {
    /// Pointer position (screen pixels).
    Position { x: i32, y: i32 },
    /// Text (clipboard).
    Text { text: String },
    /// Display size.
    Size { width: u32, height: u32 },
    /// A screenshot.
    Image(ImageOut),
    /// A tab (after navigation, tab_new, tab_switch).
    Tab {
        #[schema(value_type = Object)]
        tab: zigral_browser::TabInfo,
    },
    /// All tabs.
    Tabs {
        #[schema(value_type = Vec<Object>)]
        tabs: Vec<zigral_browser::TabInfo>,
    },
    /// Readable page text.
    PageText {
        #[schema(value_type = Object)]
        page: zigral_browser::PageText,
    },
    /// Accessibility snapshot.
    A11y {
        #[schema(value_type = Object)]
        snapshot: zigral_browser::A11ySnapshot,
    },
}

/// A client-facing error body: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct ErrorBody {
    /// Stable code (its HTTP status and meaning are fixed per code).
    pub error: crate::ErrorCode,
    pub message: String,
}

/// The result of one action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActionResult {
    pub index: usize,
    pub action: String,
    pub ok: bool,
    /// Wall time of this action, milliseconds.
    pub duration_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// The result of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// True when every action succeeded.
    pub ok: bool,
    /// One entry per action that ran (the failed one included, last).
    pub results: Vec<ActionResult>,
    /// Index of the action that failed (later actions did not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_index: Option<usize>,
    /// Screenshot after the last action that ran, when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screenshot: Option<ImageOut>,
    /// Why the requested screenshot is missing: a field holding a secret has keyboard focus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
    /// Wall time of the whole batch (lock wait included), milliseconds.
    pub duration_ms: f64,
}
