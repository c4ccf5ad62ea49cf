//! The native actions as OpenAI-compatible *function* tools, for models behind the Chat
//! Completions API (vLLM, Ollama, llama.cpp, ...), which have no computer tool: [`tools`] is
//! the `tools` array of the request (flat JSON Schemas, no `$ref`, so local tool-call parsers
//! cope), [`to_actions`] turns a `tool_calls[].function` (`name` + `arguments`) into native
//! actions through the native parser (validation identical to `POST .../actions`), and
//! [`run`] executes one call and shapes its result for a `tool` message (text) plus an image
//! for a following `user` message (tool messages carry text only).
//!
//! Names are native action names. Coordinates are in the *declared* display size (what the
//! model was told, see [`Scaling`]); they are scaled to the screen, and images come back at
//! the declared size. See `MAPPING.md`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::anthropic::Scaling;
use crate::schema::{Action, BatchRequest, BatchResponse, ImageFormat, ImageOut, Output};
use crate::{ActionError, Executor};

/// The function names [`tools`] offers, in its order.
pub const NAMES: [&str; 20] = [
    "left_click",
    "right_click",
    "middle_click",
    "double_click",
    "triple_click",
    "mouse_move",
    "drag",
    "scroll",
    "type",
    "key",
    "hold_key",
    "wait",
    "cursor_position",
    "screenshot",
    "zoom",
    "navigate",
    "back",
    "forward",
    "reload",
    "page_text",
];

fn int() -> Value {
    json!({"type": "integer"})
}

fn xy_desc(what: &str) -> Value {
    json!({"type": "integer", "minimum": 0,
           "description": format!("{what} in pixels of the screenshot (declared display)")})
}

fn modifiers() -> Value {
    json!({"type": "string",
           "description": "modifier keys held meanwhile, e.g. \"shift\" or \"ctrl+alt\""})
}

fn function(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({"type": "function", "function": {
        "name": name,
        "description": description,
        "parameters": {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        },
    }})
}

/// The function tools (`{"type": "function", "function": {name, description, parameters}}`),
/// one per name of [`NAMES`].
pub fn tools() -> Vec<Value> {
    let click = |name: &str, what: &str| {
        function(
            name,
            &format!("{what} at (x, y)."),
            json!({"x": xy_desc("x"), "y": xy_desc("y"), "modifiers": modifiers()}),
            &["x", "y"],
        )
    };
    let none = |name: &str, description: &str| function(name, description, json!({}), &[]);
    vec![
        click("left_click", "Left click"),
        click("right_click", "Right click"),
        click("middle_click", "Middle click"),
        click("double_click", "Left double click"),
        click("triple_click", "Left triple click (selects a line)"),
        function(
            "mouse_move",
            "Move the pointer to (x, y).",
            json!({"x": xy_desc("x"), "y": xy_desc("y"), "modifiers": modifiers()}),
            &["x", "y"],
        ),
        function(
            "drag",
            "Press the left button at the first point, move through the others, release at \
             the last.",
            json!({"path": {"type": "array", "minItems": 2, "maxItems": 1000,
                "items": {"type": "object", "properties": {"x": xy_desc("x"), "y": xy_desc("y")},
                          "required": ["x", "y"], "additionalProperties": false}},
                   "modifiers": modifiers()}),
            &["path"],
        ),
        function(
            "scroll",
            "Scroll the mouse wheel at (x, y).",
            json!({"x": xy_desc("x"), "y": xy_desc("y"),
                   "direction": {"type": "string", "enum": ["up", "down", "left", "right"]},
                   "amount": {"type": "integer", "minimum": 1, "maximum": 100,
                              "description": "wheel notches (default 3)"},
                   "modifiers": modifiers()}),
            &["x", "y", "direction"],
        ),
        function(
            "type",
            "Type text (any Unicode) into the focused element.",
            json!({"text": {"type": "string", "minLength": 1}}),
            &["text"],
        ),
        function(
            "key",
            "Press keys, xdotool style: \"Return\", \"ctrl+a\", \"ctrl+a Delete\" (a \
             space-separated sequence).",
            json!({"keys": {"type": "string", "minLength": 1}}),
            &["keys"],
        ),
        function(
            "hold_key",
            "Hold a key combo down for duration_ms, then release it.",
            json!({"keys": {"type": "string", "minLength": 1},
                   "duration_ms": {"type": "integer", "minimum": 0, "maximum": 60000}}),
            &["keys", "duration_ms"],
        ),
        function(
            "wait",
            "Wait duration_ms milliseconds.",
            json!({"duration_ms": {"type": "integer", "minimum": 0, "maximum": 60000}}),
            &["duration_ms"],
        ),
        none("cursor_position", "Report the pointer position."),
        none("screenshot", "Take a screenshot of the whole screen."),
        function(
            "zoom",
            "A close-up: the region [x0, y0, x1, y1] (x0 < x1, y0 < y1) of a fresh \
             screenshot, enlarged to the screenshot size.",
            json!({"region": {"type": "array", "items": int(), "minItems": 4, "maxItems": 4}}),
            &["region"],
        ),
        function(
            "navigate",
            "Open a URL (http or https) in the active tab and wait for it to load.",
            json!({"url": {"type": "string", "minLength": 1}}),
            &["url"],
        ),
        none("back", "Go back in the active tab's history."),
        none("forward", "Go forward in the active tab's history."),
        none("reload", "Reload the active tab."),
        function(
            "page_text",
            "The readable text of the active tab.",
            json!({"max_chars": {"type": "integer", "minimum": 1, "maximum": 1000000}}),
            &[],
        ),
    ]
}

/// Turns one function call into native actions, coordinates scaled from the declared display
/// to the screen. `arguments` is the call's arguments as an object, or as the JSON string
/// Chat Completions sends (`null`/`""` = no arguments). An unknown function or arguments that
/// are not an object are `bad_request`; the arguments themselves go through the native parser
/// (unknown field → `invalid_action`, ...), points off the declared display are
/// `out_of_bounds`; the rest (key names, durations, URL policy) is checked when it runs.
pub fn to_actions(name: &str, arguments: &Value, sc: &Scaling) -> Result<Vec<Action>, ActionError> {
    if !NAMES.contains(&name) {
        return Err(ActionError::BadRequest(format!(
            "unknown function {name:?} (expected one of {})",
            NAMES.join(", ")
        )));
    }
    let args = match arguments {
        Value::Null => Value::Object(Default::default()),
        Value::String(s) if s.trim().is_empty() => Value::Object(Default::default()),
        Value::String(s) => serde_json::from_str::<Value>(s)
            .map_err(|e| ActionError::BadRequest(format!("{name}: arguments are not JSON: {e}")))?,
        v => v.clone(),
    };
    let Value::Object(mut obj) = args else {
        return Err(ActionError::BadRequest(format!(
            "{name}: arguments must be a JSON object"
        )));
    };
    if obj.contains_key("action") {
        return Err(ActionError::BadRequest(format!(
            "{name}: \"action\" is implied by the function name"
        )));
    }
    obj.insert("action".into(), Value::String(name.to_owned()));
    let action = crate::parse_action(Value::Object(obj), 0)?;
    Ok(vec![scale(action, sc)?])
}

/// Scales the coordinates of `a` from the declared display to the screen.
fn scale(a: Action, sc: &Scaling) -> Result<Action, ActionError> {
    let name = a.name();
    let off = |m: String| ActionError::Invalid {
        index: 0,
        code: crate::ErrorCode::OutOfBounds,
        message: format!("{name}: {m}"),
    };
    let pt = |x: i32, y: i32| sc.to_screen([x.into(), y.into()], "point").map_err(off);
    // A lone x or y is left alone: the native validation refuses it.
    let opt = |x: Option<i32>, y: Option<i32>| -> Result<(Option<i32>, Option<i32>), ActionError> {
        match (x, y) {
            (Some(x), Some(y)) => pt(x, y).map(|(x, y)| (Some(x), Some(y))),
            other => Ok(other),
        }
    };
    Ok(match a {
        Action::LeftClick { x, y, modifiers } => {
            let (x, y) = opt(x, y)?;
            Action::LeftClick { x, y, modifiers }
        }
        Action::RightClick { x, y, modifiers } => {
            let (x, y) = opt(x, y)?;
            Action::RightClick { x, y, modifiers }
        }
        Action::MiddleClick { x, y, modifiers } => {
            let (x, y) = opt(x, y)?;
            Action::MiddleClick { x, y, modifiers }
        }
        Action::DoubleClick { x, y, modifiers } => {
            let (x, y) = opt(x, y)?;
            Action::DoubleClick { x, y, modifiers }
        }
        Action::TripleClick { x, y, modifiers } => {
            let (x, y) = opt(x, y)?;
            Action::TripleClick { x, y, modifiers }
        }
        Action::MouseMove { x, y, modifiers } => {
            let (x, y) = pt(x, y)?;
            Action::MouseMove { x, y, modifiers }
        }
        Action::Drag {
            path,
            button,
            modifiers,
        } => Action::Drag {
            path: path
                .into_iter()
                .map(|p| pt(p.x, p.y).map(|(x, y)| crate::Point { x, y }))
                .collect::<Result<_, _>>()?,
            button,
            modifiers,
        },
        Action::Scroll {
            x,
            y,
            direction,
            amount,
            modifiers,
        } => {
            let (x, y) = opt(x, y)?;
            Action::Scroll {
                x,
                y,
                direction,
                amount,
                modifiers,
            }
        }
        Action::Zoom {
            region,
            width,
            height,
            format,
            quality,
        } => {
            let region = sc
                .region_to_screen(region.map(i64::from))
                .map_err(|(code, m)| ActionError::Invalid {
                    index: 0,
                    code,
                    message: format!("{name}: {m}"),
                })?;
            let (width, height) = match (width, height) {
                (None, None) => (Some(sc.declared.width), Some(sc.declared.height)),
                other => other,
            };
            Action::Zoom {
                region,
                width,
                height,
                format,
                quality,
            }
        }
        Action::Screenshot {
            format,
            quality,
            scale,
            cursor,
        } => Action::Screenshot {
            format,
            quality,
            scale: scale.or_else(|| sc.scale_spec()),
            cursor,
        },
        other => other,
    })
}

/// Options of [`run`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Declared display width (what the model was told); default: the screen.
    #[serde(default)]
    pub display_width: Option<u32>,
    /// Declared display height; default: the screen.
    #[serde(default)]
    pub display_height: Option<u32>,
    /// Image encoding (png default, jpeg, webp).
    #[serde(default)]
    pub format: Option<ImageFormat>,
    /// Attach a screenshot after actions that change the screen (default true).
    #[serde(default)]
    pub screenshot: Option<bool>,
}

/// The result of one function call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunctionResult {
    /// The `tool` message's content: `{"ok": ..., "action": ..., "output"?: ..., "error"?:
    /// {error, message}}` as a JSON string (positions in declared pixels).
    pub content: String,
    /// The screenshot (zoom / screenshot output, else the screen after the action), at the
    /// declared size: send it in a following `user` message as an `image_url` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageOut>,
    /// True when the action failed.
    pub is_error: bool,
}

impl FunctionResult {
    /// The image as a `data:` URL (for an `image_url` content part).
    pub fn image_url(&self) -> Option<String> {
        self.image
            .as_ref()
            .map(|i| format!("data:{};base64,{}", i.mime, i.data))
    }
}

/// Runs one function call. `Err` = rejected before anything ran.
pub async fn run(
    exec: &Executor,
    name: &str,
    arguments: &Value,
    opts: &Options,
) -> Result<(FunctionResult, BatchRequest, BatchResponse), ActionError> {
    let screen = exec.screen_size().await?;
    let sc = Scaling::new(opts.display_width, opts.display_height, screen)?;
    let mut actions = to_actions(name, arguments, &sc)?;
    for a in &mut actions {
        match a {
            Action::Zoom { format, .. } | Action::Screenshot { format, .. } if format.is_none() => {
                *format = opts.format;
            }
            _ => {}
        }
    }
    let own_output = matches!(
        name,
        "screenshot" | "zoom" | "cursor_position" | "page_text"
    );
    let req = BatchRequest {
        actions,
        screenshot: (opts.screenshot.unwrap_or(true) && !own_output).then(|| {
            crate::ScreenshotSpec {
                format: opts.format,
                quality: None,
                scale: sc.scale_spec(),
                cursor: None,
            }
        }),
    };
    let resp = exec.run(&req).await?;
    let mut image = resp.screenshot.clone();
    let mut out = json!({"ok": resp.ok, "action": name});
    if let Some(note) = &resp.withheld {
        out["screenshot_withheld"] = json!(note);
    }
    for r in &resp.results {
        match &r.output {
            Some(Output::Image(img)) => image = Some(img.clone()),
            Some(Output::Position { x, y }) => {
                let (dx, dy) = sc.to_declared(*x, *y);
                out["output"] = json!({"type": "position", "x": dx, "y": dy});
            }
            Some(o) => out["output"] = serde_json::to_value(o).unwrap_or(Value::Null),
            None => {}
        }
        if let Some(e) = &r.error {
            out["error"] = json!({"error": e.error, "message": e.message});
        }
    }
    Ok((
        FunctionResult {
            content: out.to_string(),
            image,
            is_error: !resp.ok,
        },
        req,
        resp,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc() -> Scaling {
        crate::anthropic::test_scaling(1024, 640)
    }

    #[test]
    fn names_match_the_tools() {
        let names: Vec<String> = tools()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(names, NAMES.map(str::to_owned).to_vec());
    }

    #[test]
    fn scales_and_rejects() {
        let a = to_actions("left_click", &json!("{\"x\": 512, \"y\": 320}"), &sc()).expect("ok");
        assert_eq!(
            a,
            vec![Action::LeftClick {
                x: Some(640),
                y: Some(400),
                modifiers: None
            }]
        );
        let z = to_actions("zoom", &json!({"region": [0, 0, 1024, 640]}), &sc()).expect("zoom");
        assert!(matches!(
            &z[0],
            Action::Zoom {
                region: [0, 0, 1280, 800],
                width: Some(1024),
                height: Some(640),
                ..
            }
        ));
        let e = to_actions("fly", &json!({}), &sc()).expect_err("unknown");
        assert_eq!(e.code(), "bad_request");
        let e = to_actions("left_click", &json!({"x": 1, "y": 1, "z": 2}), &sc()).expect_err("z");
        assert_eq!(e.code(), "invalid_action");
        let e = to_actions("mouse_move", &json!({"x": 1024, "y": 1}), &sc()).expect_err("off");
        assert_eq!(e.code(), "out_of_bounds");
        let e = to_actions("zoom", &json!({"region": [5, 5, 5, 9]}), &sc()).expect_err("empty");
        assert_eq!(e.code(), "bad_request");
        assert_eq!(e.status(), 400);
    }
}
