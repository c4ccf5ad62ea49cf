//! One-line descriptions of tool calls: `left_click [512, 384]`, `type (12 chars)`,
//! `navigate https://example.com/`. The redacted form (typed text as its length only, like the
//! action log) goes into events; the full form is only matched against risky-action patterns.

use serde_json::Value;
use zigral_llm::Call;

/// Describes `call`; with `full`, typed text is included verbatim.
pub fn describe(call: &Call, full: bool) -> String {
    match call {
        Call::Anthropic { input } => one(input, "action", full),
        Call::OpenAi { actions, .. } => actions
            .iter()
            .map(|a| one(a, "type", full))
            .collect::<Vec<_>>()
            .join("; "),
        Call::Function { name, arguments } => {
            let mut v = arguments.clone();
            if let Value::Object(m) = &mut v {
                m.insert("action".into(), Value::String(name.clone()));
            }
            one(&v, "action", full)
        }
        Call::Malformed { name, error, .. } => format!("{name} (malformed: {error})"),
    }
}

/// The action names a call asks for (`left_click`, `click`, ...).
pub fn action_names(call: &Call) -> Vec<String> {
    let name = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("?").to_owned();
    match call {
        Call::Anthropic { input } => vec![name(input, "action")],
        Call::OpenAi { actions, .. } => actions.iter().map(|a| name(a, "type")).collect(),
        Call::Function { name, .. } | Call::Malformed { name, .. } => vec![name.clone()],
    }
}

fn one(v: &Value, key: &str, full: bool) -> String {
    let Some(m) = v.as_object() else {
        return "(not an object)".into();
    };
    let mut out = m.get(key).and_then(Value::as_str).unwrap_or("?").to_owned();
    for (k, val) in m {
        if k == key {
            continue;
        }
        let shown = match (k.as_str(), val) {
            ("text", Value::String(s)) if !full => format!("({} chars)", s.chars().count()),
            (_, Value::String(s)) => clip(s),
            (_, other) => clip(&other.to_string()),
        };
        out.push(' ');
        if !matches!(k.as_str(), "coordinate" | "url" | "text" | "keys") {
            out.push_str(k);
            out.push('=');
        }
        out.push_str(&shown);
    }
    out
}

fn clip(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut c: String = s.chars().take(MAX).collect();
        c.push('…');
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_text_is_a_length_unless_full() {
        let c = Call::Anthropic {
            input: json!({"action": "type", "text": "hunter2"}),
        };
        assert_eq!(describe(&c, false), "type (7 chars)");
        assert_eq!(describe(&c, true), "type hunter2");
        let c = Call::OpenAi {
            actions: vec![
                json!({"type": "click", "button": "left", "x": 1, "y": 2}),
                json!({"type": "type", "text": "abc"}),
            ],
            pending_safety_checks: vec![],
        };
        assert_eq!(
            describe(&c, false),
            "click button=left x=1 y=2; type (3 chars)"
        );
        assert_eq!(action_names(&c), ["click", "type"]);
        let c = Call::Function {
            name: "navigate".into(),
            arguments: json!({"url": "https://example.com/"}),
        };
        assert_eq!(describe(&c, false), "navigate https://example.com/");
    }
}
