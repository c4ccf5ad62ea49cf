//! Adapter for OpenAI's computer-use actions (a `computer_call` from the Responses API's
//! computer tool: `action` of the preview `computer_use_preview` tool, or the batched
//! `actions[]` of the GA `computer` tool): `click` (button left/right/wheel/back/forward),
//! `double_click`, `scroll` (scroll_x/scroll_y in pixels at x,y), `type`, `wait`, `move`,
//! `keypress` (keys pressed together), `drag` (path), `screenshot`; `keys` on the pointer
//! actions are modifiers held meanwhile. The reply is a `computer_call_output` item with a
//! screenshot, ready to send back to the model.
//!
//! Coordinates are in the declared display size (`display_width`/`display_height` query
//! parameters, as in the tool definition); they are scaled to the screen and the screenshot is
//! scaled to the declared size. See `MAPPING.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::anthropic::Scaling;
use crate::schema::{
    Action, BatchRequest, BatchResponse, ImageFormat, MouseButton, ScrollDirection,
};
use crate::{ActionError, Executor};

/// Pixels of `scroll_x`/`scroll_y` per wheel notch (Chrome scrolls about 100 px per notch).
pub const SCROLL_PX_PER_NOTCH: i64 = 100;
/// `wait` without `ms` sleeps this long.
pub const DEFAULT_WAIT_MS: u64 = 1000;

/// A path point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PathPoint {
    pub x: i64,
    pub y: i64,
}

/// OpenAI's mouse buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OaButton {
    Left,
    Right,
    Wheel,
    Back,
    Forward,
}

/// One OpenAI computer action. `keys` on pointer actions are modifier keys held meanwhile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OaAction {
    Click {
        button: OaButton,
        x: i64,
        y: i64,
        #[serde(default)]
        keys: Option<Vec<String>>,
    },
    DoubleClick {
        x: i64,
        y: i64,
        #[serde(default)]
        keys: Option<Vec<String>>,
    },
    Scroll {
        x: i64,
        y: i64,
        scroll_x: i64,
        scroll_y: i64,
        #[serde(default)]
        keys: Option<Vec<String>>,
    },
    Type {
        text: String,
    },
    Wait {
        /// Milliseconds (not in OpenAI's schema; default 1000).
        #[serde(default)]
        ms: Option<u64>,
    },
    Move {
        x: i64,
        y: i64,
        #[serde(default)]
        keys: Option<Vec<String>>,
    },
    Keypress {
        keys: Vec<String>,
    },
    Drag {
        path: Vec<PathPoint>,
        #[serde(default)]
        keys: Option<Vec<String>>,
    },
    Screenshot {},
}

/// Adapter options (query parameters of `POST .../actions/openai`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Declared display width (the tool definition's `display_width`); default: the screen.
    #[serde(default)]
    pub display_width: Option<u32>,
    /// Declared display height (`display_height`); default: the screen.
    #[serde(default)]
    pub display_height: Option<u32>,
    /// Screenshot encoding (png default, jpeg, webp).
    #[serde(default)]
    pub format: Option<ImageFormat>,
    /// Add native per-action results (`zigral` field) to the reply.
    #[serde(default)]
    pub verbose: Option<bool>,
}

/// The `type` of a `computer_call` item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComputerCallType {
    ComputerCall,
}

/// A `computer_call` output item as the Responses API returns it (for the OpenAPI document;
/// parsing is [`Call::from_value`]). Other fields of the item are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComputerCallItem {
    #[serde(rename = "type")]
    pub kind: ComputerCallType,
    /// The item id (`cu_...`; ignored).
    #[serde(default)]
    pub id: Option<String>,
    /// Echoed in the `computer_call_output`.
    #[serde(default)]
    pub call_id: Option<String>,
    /// `completed`, ... (ignored).
    #[serde(default)]
    pub status: Option<String>,
    /// One action (the preview `computer_use_preview` tool).
    #[serde(default)]
    pub action: Option<OaAction>,
    /// Batched actions (the GA `computer` tool), run in order; wins over `action`.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub actions: Option<Vec<OaAction>>,
    /// Safety checks to acknowledge in the next request (ignored here).
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub pending_safety_checks: Option<Vec<Value>>,
}

/// A bare list of actions, run in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionList {
    #[schema(max_items = 100)]
    pub actions: Vec<OaAction>,
    /// Echoed in the `computer_call_output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
}

/// The body of `POST .../actions/openai`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OpenAiBody {
    /// One action: `{"type": "click", "button": "left", "x": 10, "y": 20}`.
    Action(OaAction),
    /// A `computer_call` item (`action` or GA `actions`).
    Item(ComputerCallItem),
    /// `{"actions": [...]}`.
    Actions(ActionList),
}

/// What the endpoint accepts: one action, a `computer_call` item (with `action` or
/// `actions`), or `{"actions": [...]}` (see [`OpenAiBody`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub call_id: Option<String>,
    pub actions: Vec<OaAction>,
}

impl Call {
    /// Parses a request body.
    pub fn from_value(v: Value) -> Result<Call, ActionError> {
        let Value::Object(mut obj) = v else {
            return Err(ActionError::BadRequest("expected a JSON object".into()));
        };
        let parse = |v: Value, i: usize| -> Result<OaAction, ActionError> {
            let ty = v
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            serde_json::from_value(v).map_err(|e| ActionError::Invalid {
                index: i,
                code: if e.to_string().contains("unknown variant") || ty.is_empty() {
                    crate::ErrorCode::UnknownAction
                } else {
                    crate::ErrorCode::InvalidAction
                },
                message: format!("action {i} ({ty}): {e}"),
            })
        };
        let is_call = obj.get("type").and_then(Value::as_str) == Some("computer_call");
        if !is_call && obj.contains_key("type") {
            return Ok(Call {
                call_id: None,
                actions: vec![parse(Value::Object(obj), 0)?],
            });
        }
        let call_id = match obj.remove("call_id") {
            Some(Value::String(s)) => Some(s),
            None | Some(Value::Null) => None,
            Some(_) => return Err(ActionError::BadRequest("call_id must be a string".into())),
        };
        // A GA item may carry `"action": null` next to `actions` (and a preview item
        // `"actions": null`); `actions` wins when both are there.
        let one = obj.remove("action").filter(|v| !v.is_null());
        let many = obj.remove("actions").filter(|v| !v.is_null());
        let actions = if let Some(many) = many {
            let Value::Array(items) = many else {
                return Err(ActionError::BadRequest(
                    "\"actions\" must be an array".into(),
                ));
            };
            if items.len() > crate::MAX_BATCH {
                return Err(ActionError::BadRequest(format!(
                    "at most {} actions",
                    crate::MAX_BATCH
                )));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| parse(v, i))
                .collect::<Result<_, _>>()?
        } else if let Some(a) = one {
            vec![parse(a, 0)?]
        } else {
            return Err(ActionError::BadRequest(
                "expected an action ({\"type\": \"click\", ...}), a computer_call item, or \
                 {\"actions\": [...]}"
                    .into(),
            ));
        };
        if !is_call && let Some(k) = obj.keys().next() {
            return Err(ActionError::BadRequest(format!("unknown field {k:?}")));
        }
        Ok(Call { call_id, actions })
    }
}

/// Maps an OpenAI key name to the desktop's key names (case-folded single letters, so that
/// `["CTRL", "A"]` is ctrl+a, not ctrl+shift+a).
pub fn key_name(k: &str) -> String {
    let t = k.trim();
    if t.is_empty() && !k.is_empty() {
        return "space".into();
    }
    let mut chars = t.chars();
    if let (Some(c), None) = (chars.next(), chars.clone().next())
        && c.is_ascii_alphabetic()
    {
        return c.to_ascii_lowercase().to_string();
    }
    match t.to_ascii_lowercase().as_str() {
        "cmd" | "command" | "win" | "windows" | "meta" | "super" => "super".into(),
        "pageup" => "Page_Up".into(),
        "pagedown" => "Page_Down".into(),
        "capslock" => "Caps_Lock".into(),
        "printscreen" => "Print".into(),
        _ => t.to_owned(),
    }
}

fn combo(keys: &[String]) -> Option<String> {
    if keys.is_empty() {
        return None;
    }
    Some(
        keys.iter()
            .map(|k| key_name(k))
            .collect::<Vec<_>>()
            .join("+"),
    )
}

/// Translates OpenAI actions into native ones (coordinates scaled to the screen). Screenshot
/// actions become nothing: every reply carries a screenshot anyway.
pub fn translate(actions: &[OaAction], sc: &Scaling) -> Result<Vec<Action>, ActionError> {
    let mut out = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        let inv = |code: crate::ErrorCode, m: String| ActionError::Invalid {
            index: i,
            code,
            message: format!("action {i}: {m}"),
        };
        let pt = |x: i64, y: i64| -> Result<(i32, i32), ActionError> {
            sc.to_screen([x, y], "point")
                .map_err(|m| inv(crate::ErrorCode::OutOfBounds, m))
        };
        let mods = |k: &Option<Vec<String>>| k.as_deref().and_then(combo);
        match a {
            OaAction::Click { button, x, y, keys } => {
                let (x, y) = pt(*x, *y)?;
                out.push(Action::Click {
                    x: Some(x),
                    y: Some(y),
                    button: match button {
                        OaButton::Left => MouseButton::Left,
                        OaButton::Right => MouseButton::Right,
                        OaButton::Wheel => MouseButton::Middle,
                        OaButton::Back => MouseButton::Back,
                        OaButton::Forward => MouseButton::Forward,
                    },
                    count: Some(1),
                    modifiers: mods(keys),
                });
            }
            OaAction::DoubleClick { x, y, keys } => {
                let (x, y) = pt(*x, *y)?;
                out.push(Action::DoubleClick {
                    x: Some(x),
                    y: Some(y),
                    modifiers: mods(keys),
                });
            }
            OaAction::Scroll {
                x,
                y,
                scroll_x,
                scroll_y,
                keys,
            } => {
                let (x, y) = pt(*x, *y)?;
                let notches = |px: i64| -> u32 {
                    let n = (px.abs() + SCROLL_PX_PER_NOTCH / 2) / SCROLL_PX_PER_NOTCH;
                    n.clamp(1, i64::from(zigral_desktop::MAX_CLICKS)) as u32
                };
                if *scroll_y != 0 {
                    out.push(Action::Scroll {
                        x: Some(x),
                        y: Some(y),
                        direction: if *scroll_y > 0 {
                            ScrollDirection::Down
                        } else {
                            ScrollDirection::Up
                        },
                        amount: Some(notches(*scroll_y)),
                        modifiers: mods(keys),
                    });
                }
                if *scroll_x != 0 {
                    out.push(Action::Scroll {
                        x: Some(x),
                        y: Some(y),
                        direction: if *scroll_x > 0 {
                            ScrollDirection::Right
                        } else {
                            ScrollDirection::Left
                        },
                        amount: Some(notches(*scroll_x)),
                        modifiers: mods(keys),
                    });
                }
                if *scroll_x == 0 && *scroll_y == 0 {
                    out.push(Action::MouseMove {
                        x,
                        y,
                        modifiers: mods(keys),
                    });
                }
            }
            OaAction::Type { text } => out.push(Action::Type {
                text: text.clone(),
                delay_ms: None,
            }),
            OaAction::Wait { ms } => out.push(Action::Wait {
                duration_ms: ms.unwrap_or(DEFAULT_WAIT_MS),
            }),
            OaAction::Move { x, y, keys } => {
                let (x, y) = pt(*x, *y)?;
                out.push(Action::MouseMove {
                    x,
                    y,
                    modifiers: mods(keys),
                });
            }
            OaAction::Keypress { keys } => {
                let c = combo(keys)
                    .ok_or_else(|| inv(crate::ErrorCode::InvalidAction, "keys is empty".into()))?;
                out.push(Action::Key { keys: c });
            }
            OaAction::Drag { path, keys } => {
                let pts = path
                    .iter()
                    .map(|p| pt(p.x, p.y).map(|(x, y)| crate::Point { x, y }))
                    .collect::<Result<Vec<_>, _>>()?;
                out.push(Action::Drag {
                    path: pts,
                    button: MouseButton::Left,
                    modifiers: mods(keys),
                });
            }
            OaAction::Screenshot {} => {}
        }
    }
    Ok(out)
}

/// The reply item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CallOutput {
    /// Always `computer_call_output`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// `{"type": "computer_screenshot", "image_url": "data:image/png;base64,..."}`.
    #[schema(value_type = Object)]
    pub output: Value,
    /// Set when an action failed (`{error, message, index}`); the screenshot shows the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// Native results and timings (only with `verbose=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub zigral: Option<Value>,
}

/// Runs a call. `Err` = rejected before anything ran.
pub async fn run(
    exec: &Executor,
    call: &Call,
    opts: &Options,
) -> Result<(CallOutput, BatchRequest, BatchResponse), ActionError> {
    let screen = exec.screen_size().await?;
    let sc = Scaling::new(opts.display_width, opts.display_height, screen)?;
    let actions = translate(&call.actions, &sc)?;
    let req = BatchRequest {
        actions,
        screenshot: Some(crate::ScreenshotSpec {
            format: opts.format,
            quality: None,
            scale: sc.scale_spec(),
            cursor: None,
        }),
    };
    let resp = exec.run(&req).await?;
    let image_url = resp
        .screenshot
        .as_ref()
        .map(|i| format!("data:{};base64,{}", i.mime, i.data))
        .unwrap_or_default();
    let error = resp
        .results
        .iter()
        .find(|r| !r.ok)
        .and_then(|r| {
            r.error
                .as_ref()
                .map(|e| json!({"error": e.error, "message": e.message, "index": r.index}))
        })
        .or_else(|| {
            resp.withheld
                .as_ref()
                .map(|note| json!({"error": crate::ErrorCode::ScreenshotWithheld, "message": note}))
        });
    let zigral = opts.verbose.unwrap_or(false).then(|| {
        json!({"ok": resp.ok, "failed_index": resp.failed_index, "duration_ms": resp.duration_ms,
               "results": resp.results})
    });
    Ok((
        CallOutput {
            kind: "computer_call_output".into(),
            call_id: call.call_id.clone(),
            output: json!({"type": "computer_screenshot", "image_url": image_url}),
            error,
            zigral,
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
    fn parses_the_three_shapes() {
        let one = Call::from_value(json!({"type": "click", "button": "left", "x": 1, "y": 2}))
            .expect("one");
        assert_eq!(one.actions.len(), 1);
        let item = Call::from_value(
            json!({"type": "computer_call", "id": "cu_1", "call_id": "c1",
            "action": {"type": "keypress", "keys": ["CTRL", "A"]}, "pending_safety_checks": [],
            "status": "completed"}),
        )
        .expect("item");
        assert_eq!(item.call_id.as_deref(), Some("c1"));
        let many = Call::from_value(json!({"actions": [{"type": "screenshot"},
            {"type": "wait"}]}))
        .expect("many");
        assert_eq!(many.actions.len(), 2);
        let ga = Call::from_value(json!({"type": "computer_call", "call_id": "c2",
            "action": null, "actions": [{"type": "click", "button": "back", "x": 1, "y": 2,
            "keys": ["SHIFT"]}, {"type": "move", "x": 3, "y": 4, "keys": ["CTRL"]},
            {"type": "drag", "path": [{"x": 1, "y": 1}, {"x": 2, "y": 2}], "keys": ["ALT"]}]}))
        .expect("GA batch");
        assert_eq!(ga.actions.len(), 3);
        let acts = translate(&ga.actions, &sc()).expect("translate");
        assert!(
            matches!(&acts[0], Action::Click { button: MouseButton::Back,
            modifiers: Some(m), .. } if m == "SHIFT")
        );
        assert!(matches!(&acts[1], Action::MouseMove { modifiers: Some(m), .. } if m == "CTRL"));
        assert!(matches!(&acts[2], Action::Drag { modifiers: Some(m), .. } if m == "ALT"));
        let pre = Call::from_value(json!({"type": "computer_call", "actions": null,
            "action": {"type": "wait"}}))
        .expect("preview item with actions: null");
        assert_eq!(pre.actions, vec![OaAction::Wait { ms: None }]);
        let bad = Call::from_value(json!({"type": "teleport"})).expect_err("unknown");
        assert_eq!(bad.code(), "unknown_action");
        assert_eq!(bad.status(), 400);
    }

    #[test]
    fn translates_with_scaling() {
        let acts = translate(
            &[
                OaAction::Click {
                    button: OaButton::Wheel,
                    x: 512,
                    y: 320,
                    keys: None,
                },
                OaAction::Keypress {
                    keys: vec!["CTRL".into(), "A".into()],
                },
                OaAction::Scroll {
                    x: 0,
                    y: 0,
                    scroll_x: -250,
                    scroll_y: 300,
                    keys: None,
                },
            ],
            &sc(),
        )
        .expect("ok");
        assert_eq!(
            acts[0],
            Action::Click {
                x: Some(640),
                y: Some(400),
                button: MouseButton::Middle,
                count: Some(1),
                modifiers: None
            }
        );
        assert_eq!(
            acts[1],
            Action::Key {
                keys: "CTRL+a".into()
            }
        );
        assert!(matches!(
            acts[2],
            Action::Scroll {
                direction: ScrollDirection::Down,
                amount: Some(3),
                ..
            }
        ));
        assert!(matches!(
            acts[3],
            Action::Scroll {
                direction: ScrollDirection::Left,
                amount: Some(3),
                ..
            }
        ));
        let err = translate(
            &[OaAction::Move {
                x: 2000,
                y: 1,
                keys: None,
            }],
            &sc(),
        )
        .expect_err("off");
        assert_eq!(err.code(), "out_of_bounds");
    }
}
