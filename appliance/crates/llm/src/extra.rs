//! [`ExtraTool`]: a tool the model is offered besides the computer tool (the control plane's
//! `type_secret` and `request_human_input`), checked once when it is given to the client and
//! rendered in each family's custom-tool shape, after the computer tool:
//!
//! - Anthropic Messages: a client tool `{"name", "description", "input_schema"}`;
//! - OpenAI Responses: `{"type": "function", "name", "description", "parameters"}`;
//! - Chat Completions: `{"type": "function", "function": {"name", "description", "parameters"}}`,
//!   appended to the function tools.
//!
//! Calls to it come back as [`crate::Call::Function`] in every family.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{LlmError, anthropic, chat, responses};

/// A tool besides the computer tool: a name (`^[a-zA-Z0-9_-]{1,64}$`, not `computer` nor a
/// computer toolset member), a description for the model, and a JSON Schema of its input
/// (an object schema: `{"type": "object", ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtraTool {
    pub name: String,
    pub description: String,
    /// JSON Schema of the input, `{"type": "object", "properties": ..., ...}`.
    pub parameters: Value,
}

impl ExtraTool {
    /// A tool (not checked yet: [`crate::Client::with_extra_tools`] checks it).
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Value,
    ) -> ExtraTool {
        ExtraTool {
            name: name.into(),
            description: description.into(),
            parameters,
        }
    }

    /// Checks the name (pattern, not a computer tool name) and that the parameters are an
    /// object schema.
    pub fn check(&self) -> Result<(), LlmError> {
        let bad = |why: String| {
            Err(LlmError::Build(format!(
                "extra tool {:?}: {why}",
                self.name
            )))
        };
        if !valid_tool_name(&self.name) {
            return bad("the name must match ^[a-zA-Z0-9_-]{1,64}$".into());
        }
        if self.name == anthropic::COMPUTER_TOOLSET
            || anthropic::TOOLSET_MEMBERS.contains(&self.name.as_str())
        {
            return bad("the name is taken by the computer tool".into());
        }
        if self.parameters.get("type").and_then(Value::as_str) != Some("object") {
            return bad(
                "the parameters must be a JSON Schema object with \"type\": \"object\"".into(),
            );
        }
        Ok(())
    }

    /// The Anthropic client tool `{"name", "description", "input_schema"}`.
    pub(crate) fn anthropic(&self) -> anthropic::Tool {
        anthropic::Tool::custom(&self.name, &self.description, self.parameters.clone())
    }

    /// The Responses function tool.
    pub(crate) fn responses(&self) -> responses::Tool {
        responses::Tool::Function {
            name: self.name.clone(),
            description: Some(self.description.clone()),
            parameters: self.parameters.clone(),
        }
    }

    /// The Chat Completions function tool.
    pub(crate) fn chat(&self) -> chat::ToolDef {
        chat::ToolDef::function(&self.name, &self.description, self.parameters.clone())
    }
}

/// Whether `name` is a valid tool name for every family: `^[a-zA-Z0-9_-]{1,64}$`.
pub fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks every tool and that no name is used twice, among them or by a Chat function tool.
pub(crate) fn check_all(tools: &[ExtraTool], functions: &[chat::ToolDef]) -> Result<(), LlmError> {
    for (i, t) in tools.iter().enumerate() {
        t.check()?;
        if tools[..i].iter().any(|o| o.name == t.name) {
            return Err(LlmError::Build(format!(
                "extra tool {:?} is given twice",
                t.name
            )));
        }
        if functions.iter().any(|f| f.function.name == t.name) {
            return Err(LlmError::Build(format!(
                "extra tool {:?} has the name of a function tool",
                t.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, parameters: Value) -> ExtraTool {
        ExtraTool::new(name, "d", parameters)
    }

    #[test]
    fn names_and_schemas_are_checked() {
        let obj = json!({"type": "object", "properties": {}});
        assert!(tool("type_secret", obj.clone()).check().is_ok());
        assert!(tool("request-human-input2", obj.clone()).check().is_ok());
        for bad in ["", "has space", "dot.name", "ünï", &"x".repeat(65)] {
            assert!(tool(bad, obj.clone()).check().is_err(), "{bad:?}");
        }
        for taken in ["computer", "left_click", "type", "zoom"] {
            assert!(tool(taken, obj.clone()).check().is_err(), "{taken}");
        }
        for params in [
            json!({}),
            json!("object"),
            json!({"type": "string"}),
            json!(null),
        ] {
            assert!(tool("t", params.clone()).check().is_err(), "{params}");
        }
        let twice = [tool("a", obj.clone()), tool("a", obj.clone())];
        assert!(check_all(&twice, &[]).is_err());
        let f = [chat::ToolDef::function("drag", "d", obj.clone())];
        assert!(check_all(&[tool("drag", obj.clone())], &f).is_err());
        assert!(check_all(&[tool("a", obj.clone()), tool("b", obj)], &f).is_ok());
    }

    #[test]
    fn rendered_per_family() {
        let schema = json!({"type": "object", "properties": {"name": {"type": "string"}},
                            "required": ["name"]});
        let t = ExtraTool::new("type_secret", "Types a stored secret.", schema.clone());
        assert_eq!(
            serde_json::to_value(t.anthropic()).expect("ser"),
            json!({"name": "type_secret", "description": "Types a stored secret.",
                   "input_schema": schema})
        );
        assert_eq!(
            serde_json::to_value(t.responses()).expect("ser"),
            json!({"type": "function", "name": "type_secret",
                   "description": "Types a stored secret.", "parameters": schema})
        );
        assert_eq!(
            serde_json::to_value(t.chat()).expect("ser"),
            json!({"type": "function", "function": {"name": "type_secret",
                   "description": "Types a stored secret.", "parameters": schema}})
        );
    }
}
