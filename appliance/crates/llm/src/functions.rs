//! The default function tools a Chat Completions client offers when it was given none
//! ([`crate::Client::with_function_tools`]): the mouse and keyboard subset of the native
//! actions, with the same names and argument shapes as `zigral_actions::functions::tools()`
//! (flat JSON Schemas; coordinates in the declared display), so a call maps to native actions
//! the same way. The control plane passes the full native set instead.

use serde_json::{Value, json};

use crate::chat::ToolDef;

fn xy(what: &str) -> Value {
    json!({"type": "integer", "minimum": 0,
           "description": format!("{what} in pixels of the screenshot")})
}

fn function(name: &str, description: &str, properties: Value, required: &[&str]) -> ToolDef {
    ToolDef::function(
        name,
        description,
        json!({"type": "object", "properties": properties, "required": required,
               "additionalProperties": false}),
    )
}

/// Mouse/keyboard function tools: clicks, move, drag, scroll, type, key, wait, screenshot.
pub fn default_tools() -> Vec<ToolDef> {
    let click = |name: &str, what: &str| {
        function(
            name,
            &format!("{what} at (x, y)."),
            json!({"x": xy("x"), "y": xy("y")}),
            &["x", "y"],
        )
    };
    vec![
        click("left_click", "Left click"),
        click("right_click", "Right click"),
        click("double_click", "Left double click"),
        click("triple_click", "Left triple click (selects a line)"),
        click("mouse_move", "Move the pointer"),
        function(
            "drag",
            "Press the left button at the first point, move through the others, release at the last.",
            json!({"path": {"type": "array", "minItems": 2,
                "items": {"type": "object", "properties": {"x": xy("x"), "y": xy("y")},
                          "required": ["x", "y"], "additionalProperties": false}}}),
            &["path"],
        ),
        function(
            "scroll",
            "Scroll the mouse wheel at (x, y).",
            json!({"x": xy("x"), "y": xy("y"),
                   "direction": {"type": "string", "enum": ["up", "down", "left", "right"]},
                   "amount": {"type": "integer", "minimum": 1, "maximum": 100}}),
            &["x", "y", "direction"],
        ),
        function(
            "type",
            "Type text into the focused element.",
            json!({"text": {"type": "string", "minLength": 1}}),
            &["text"],
        ),
        function(
            "key",
            "Press keys, xdotool style: \"Return\", \"ctrl+a\".",
            json!({"keys": {"type": "string", "minLength": 1}}),
            &["keys"],
        ),
        function(
            "wait",
            "Wait duration_ms milliseconds.",
            json!({"duration_ms": {"type": "integer", "minimum": 0, "maximum": 60000}}),
            &["duration_ms"],
        ),
        function(
            "screenshot",
            "Take a screenshot of the whole screen.",
            json!({}),
            &[],
        ),
    ]
}
