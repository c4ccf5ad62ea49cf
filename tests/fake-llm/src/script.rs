//! The script: the steps tests queue with `POST /_script`, parsed strictly so a typo in a test
//! fails at queue time (400) instead of producing a surprising reply later.
//!
//! A step is a JSON object recognised by its key: `"fault"` → [`Fault`], `"calls"` →
//! [`CallsStep`], `"text"` → [`TextStep`]. Unknown fields are rejected. A call is a computer
//! action (`{"action": ...}`) or a call to a tool the request declared besides the computer
//! tool (`{"tool": name, "input": {...}}`).

use serde::Deserialize;
use serde_json::{Map, Value};

/// The 17 computer actions (the `computer_2025*` single-tool `action` values and the members of
/// `computer_toolset_20260801`).
pub const ACTIONS: [&str; 17] = zigral_llm::anthropic::TOOLSET_MEMBERS;

/// Why a step did not parse.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The step is not an object with one of the keys `text`, `calls`, `fault`.
    #[error("a step must be an object with a \"text\", \"calls\" or \"fault\" key: {0}")]
    UnknownStep(String),
    /// The fields of the step do not match its kind.
    #[error("bad step: {0}")]
    Fields(#[from] serde_json::Error),
    /// A call has no `action`, or an action that is not one of [`ACTIONS`], or is a malformed
    /// `{"tool": name, "input": {...}}` call.
    #[error("call {index}: {reason}")]
    Call {
        /// The position of the call in its step.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// One scripted model turn (or fault). Each model request pops one.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A text reply that ends the turn.
    Text(TextStep),
    /// Tool calls (the turn ends with stop reason `tool_use` / `tool_calls`).
    Calls(CallsStep),
    /// An injected fault.
    Fault(Fault),
}

impl Step {
    /// A short label for records and stats: `text`, `calls`, or `fault:<kind>`.
    pub fn label(&self) -> String {
        match self {
            Step::Text(_) => "text".into(),
            Step::Calls(_) => "calls".into(),
            Step::Fault(f) => format!("fault:{}", f.kind()),
        }
    }
}

impl TryFrom<Value> for Step {
    type Error = ScriptError;

    fn try_from(v: Value) -> Result<Self, ScriptError> {
        let Some(obj) = v.as_object() else {
            return Err(ScriptError::UnknownStep(v.to_string()));
        };
        if obj.contains_key("fault") {
            Ok(Step::Fault(serde_json::from_value(v)?))
        } else if obj.contains_key("calls") {
            let step: CallsStep = serde_json::from_value(v)?;
            for (index, call) in step.calls.iter().enumerate() {
                call.check()
                    .map_err(|reason| ScriptError::Call { index, reason })?;
            }
            Ok(Step::Calls(step))
        } else if obj.contains_key("text") {
            Ok(Step::Text(serde_json::from_value(v)?))
        } else {
            Err(ScriptError::UnknownStep(v.to_string()))
        }
    }
}

/// `{"text": "Done.", "thinking": false}`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextStep {
    /// The reply text.
    pub text: String,
    /// Adds a thinking block (Anthropic) / reasoning item (Responses) first.
    #[serde(default)]
    pub thinking: bool,
}

/// `{"calls": [{"action": "left_click", "coordinate": [10, 20]}], "text": "...", "thinking": true,
/// "safety_check": {"code": "...", "message": "..."}}`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsStep {
    /// The calls: computer actions in the Anthropic single-tool input shape, or extra tool
    /// calls `{"tool": name, "input": {...}}`.
    pub calls: Vec<Call>,
    /// Optional text sent before the calls.
    #[serde(default)]
    pub text: Option<String>,
    /// Adds a thinking block / reasoning item first.
    #[serde(default)]
    pub thinking: bool,
    /// Adds a pending safety check to the (first) Responses `computer_call`.
    #[serde(default)]
    pub safety_check: Option<SafetyCheck>,
}

/// A pending safety check the fake attaches to a Responses `computer_call`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyCheck {
    /// e.g. `malicious_instructions`.
    pub code: String,
    /// Human-readable text.
    pub message: String,
}

/// One call: a computer action in the Anthropic single-tool input shape, e.g.
/// `{"action": "scroll", "coordinate": [5, 6], "scroll_direction": "down", "scroll_amount": 3}`,
/// or a call to a tool besides the computer tool, `{"tool": "type_secret", "input": {...}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Call(pub Map<String, Value>);

impl Call {
    /// The `action` value ("" when missing or for a tool call).
    pub fn action(&self) -> &str {
        self.0.get("action").and_then(Value::as_str).unwrap_or("")
    }

    /// The tool name of a `{"tool": name, "input": {...}}` call (`None` for a computer action).
    pub fn tool(&self) -> Option<&str> {
        self.0.get("tool").and_then(Value::as_str)
    }

    /// The input of a tool call (`{}` when not given).
    pub fn tool_input(&self) -> Map<String, Value> {
        self.0
            .get("input")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// The input without `action` (the toolset member input).
    pub fn member_input(&self) -> Map<String, Value> {
        let mut m = self.0.clone();
        m.remove("action");
        m
    }

    /// A point field (`coordinate`, `start_coordinate`) as `(x, y)`.
    pub fn point(&self, key: &str) -> Option<(i64, i64)> {
        let arr = self.0.get(key)?.as_array()?;
        match arr.as_slice() {
            [x, y] => Some((x.as_i64()?, y.as_i64()?)),
            _ => None,
        }
    }

    /// A string field.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    fn check(&self) -> Result<(), String> {
        if self.0.contains_key("tool") {
            let name = self.tool().unwrap_or("");
            if !zigral_llm::valid_tool_name(name) {
                return Err(format!(
                    "tool name {:?} must match ^[a-zA-Z0-9_-]{{1,64}}$",
                    self.0["tool"]
                ));
            }
            if self.0.get("input").is_some_and(|i| !i.is_object()) {
                return Err("a tool call's input must be an object".into());
            }
            if let Some(k) = self
                .0
                .keys()
                .find(|k| !matches!(k.as_str(), "tool" | "input"))
            {
                return Err(format!("a tool call takes only tool and input, not {k:?}"));
            }
            return Ok(());
        }
        let action = self.action();
        if !ACTIONS.contains(&action) {
            return Err(format!("unknown action {action:?}"));
        }
        for key in ["coordinate", "start_coordinate"] {
            if self.0.contains_key(key) && self.point(key).is_none() {
                return Err(format!("{key} must be [x, y] integers"));
            }
        }
        let needs: &[&str] = match action {
            "type" | "key" | "hold_key" => &["text"],
            "mouse_move" => &["coordinate"],
            "left_click_drag" => &["start_coordinate", "coordinate"],
            "scroll" => &["scroll_direction", "scroll_amount"],
            "zoom" => &["region"],
            _ => &[],
        };
        match needs.iter().find(|k| !self.0.contains_key(**k)) {
            Some(k) => Err(format!("{action} needs {k}")),
            None => Ok(()),
        }
    }
}

/// Injected faults: `{"fault": "<kind>", ...}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// An HTTP error with the provider's real error body and optional retry headers.
    Status {
        /// 429, 500, 529, ...
        status: u16,
        /// `retry-after` header, seconds.
        #[serde(default)]
        retry_after: Option<u64>,
        /// `retry-after-ms` header.
        #[serde(default)]
        retry_after_ms: Option<u64>,
    },
    /// 200, a few stream events, then an `error` event (no complete reply).
    MidStreamError,
    /// Anthropic `stop_reason: pause_turn` with some text.
    PauseTurn,
    /// A refusal stop.
    Refusal,
    /// The reply is cut at the output token limit.
    MaxTokens,
    /// A tool call whose input is invalid for the tool.
    Malformed,
    /// Accepts the request, sends nothing for `ms`, then answers 504.
    Timeout {
        /// How long to stay silent.
        ms: u64,
    },
    /// An error status with `x-should-retry: false`.
    XShouldRetryFalse {
        /// The status (500 unless given).
        #[serde(default = "default_500")]
        status: u16,
    },
}

fn default_500() -> u16 {
    500
}

impl Fault {
    /// The `fault` tag value.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Status { .. } => "status",
            Fault::MidStreamError => "mid_stream_error",
            Fault::PauseTurn => "pause_turn",
            Fault::Refusal => "refusal",
            Fault::MaxTokens => "max_tokens",
            Fault::Malformed => "malformed",
            Fault::Timeout { .. } => "timeout",
            Fault::XShouldRetryFalse { .. } => "x_should_retry_false",
        }
    }
}

/// The body of `POST /_script`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptBody {
    /// Raw steps, parsed one by one with [`Step::try_from`].
    pub steps: Vec<Value>,
}

/// Parses every step of a `POST /_script` body (all or nothing).
pub fn parse_steps(body: Value) -> Result<Vec<Step>, ScriptError> {
    let body: ScriptBody = serde_json::from_value(body)?;
    body.steps.into_iter().map(Step::try_from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_parse_by_key() {
        let steps = parse_steps(json!({"steps": [
            {"text": "Done."},
            {"calls": [{"action": "left_click", "coordinate": [1, 2]}], "thinking": true},
            {"fault": "status", "status": 429, "retry_after": 1},
            {"fault": "x_should_retry_false"},
            {"fault": "timeout", "ms": 10},
        ]}))
        .expect("parse");
        assert_eq!(steps.len(), 5);
        assert_eq!(steps[1].label(), "calls");
        assert_eq!(
            steps[3],
            Step::Fault(Fault::XShouldRetryFalse { status: 500 })
        );
    }

    #[test]
    fn typos_are_rejected() {
        assert!(parse_steps(json!({"steps": [{"txt": "x"}]})).is_err());
        assert!(parse_steps(json!({"steps": [{"text": "x", "thinkin": true}]})).is_err());
        assert!(parse_steps(json!({"steps": [{"calls": [{"action": "teleport"}]}]})).is_err());
        assert!(parse_steps(json!({"steps": [{"calls": [{"action": "type"}]}]})).is_err());
        assert!(parse_steps(json!({"steps": [{"fault": "nope"}]})).is_err());
    }

    #[test]
    fn tool_calls_parse_and_are_checked() {
        let steps = parse_steps(json!({"steps": [{"calls": [
            {"tool": "type_secret", "input": {"name": "site", "field": "password"}},
            {"tool": "request_human_input"},
            {"action": "screenshot"},
        ]}]}))
        .expect("parse");
        let Step::Calls(c) = &steps[0] else {
            panic!("calls")
        };
        assert_eq!(c.calls[0].tool(), Some("type_secret"));
        assert_eq!(c.calls[0].tool_input()["field"], "password");
        assert_eq!(c.calls[1].tool_input(), Map::new());
        assert_eq!(c.calls[2].tool(), None);
        for bad in [
            json!({"tool": "has space"}),
            json!({"tool": ""}),
            json!({"tool": 3}),
            json!({"tool": "t", "input": "x"}),
            json!({"tool": "t", "action": "screenshot"}),
            json!({"tool": "t", "inputs": {}}),
        ] {
            assert!(
                parse_steps(json!({"steps": [{"calls": [bad.clone()]}]})).is_err(),
                "{bad}"
            );
        }
    }
}
