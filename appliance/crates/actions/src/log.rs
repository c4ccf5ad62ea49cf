//! The action log's records: what [`BatchResponse::log_entries`] makes of an executed batch
//! (who, door, action name, redacted input, result summary, timing). Typed text goes through
//! the host's [`TypedText`] policy; secret placeholders are never logged.

use serde_json::{Value, json};

use crate::schema::{BatchRequest, BatchResponse, Output};

/// One action-log record: who did what, with what result, how long it took.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// Who drove: `agent:<id>`, `token:<name>`, `user:<name>`.
    pub who: String,
    /// Through which door: `rest`, `anthropic`, `openai`, `mcp`.
    pub via: String,
    /// Position in its batch.
    pub index: usize,
    /// Action name.
    pub action: String,
    /// The action's input (long texts shortened; never image data).
    pub input: Value,
    pub ok: bool,
    /// Short result summary (no image bytes).
    pub result: Value,
    pub duration_ms: f64,
}

/// Marks a secret placeholder in action input (`{{secret:name}}`): a string field that holds
/// one is never written to the action log, whatever the [`TypedText`] policy.
pub const SECRET_MARKER: &str = "{{secret:";

/// How text typed or pasted into the desktop (the fields of [`crate::Action::typed_fields`]) appears
/// in the action log.
pub trait TypedText: Send + Sync {
    /// The log value standing for `text`.
    fn log_value(&self, text: &str) -> Value;
}

/// Only the length of typed text is logged (`{"chars": n}`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LengthOnly;

impl TypedText for LengthOnly {
    fn log_value(&self, text: &str) -> Value {
        json!({"chars": text.chars().count()})
    }
}

/// Typed text is logged in clear (shortened past 200 characters).
#[derive(Debug, Clone, Copy, Default)]
pub struct FullText;

impl TypedText for FullText {
    fn log_value(&self, text: &str) -> Value {
        let n = text.chars().count();
        if n > 200 {
            Value::String(format!(
                "{}… ({n} chars)",
                text.chars().take(200).collect::<String>()
            ))
        } else {
            Value::String(text.to_owned())
        }
    }
}

impl BatchResponse {
    /// The log records of this batch (one per action that ran); typed text as `typed` allows.
    pub fn log_entries(
        &self,
        req: &BatchRequest,
        who: &str,
        via: &str,
        typed: &dyn TypedText,
    ) -> Vec<LogEntry> {
        self.results
            .iter()
            .map(|r| LogEntry {
                who: who.to_owned(),
                via: via.to_owned(),
                index: r.index,
                action: r.action.clone(),
                input: req
                    .actions
                    .get(r.index)
                    .map(|a| a.log_json(typed))
                    .unwrap_or(Value::Null),
                ok: r.ok,
                result: match (&r.error, &r.output) {
                    (Some(e), _) => json!({"error": e.error, "message": e.message}),
                    (None, Some(o)) => summarize(o),
                    (None, None) => Value::Null,
                },
                duration_ms: r.duration_ms,
            })
            .collect()
    }
}

fn summarize(o: &Output) -> Value {
    match o {
        Output::Image(i) => json!({"image": i.mime, "width": i.width, "height": i.height}),
        Output::PageText { page } => {
            json!({"url": page.url, "title": page.title, "chars": page.text.chars().count()})
        }
        Output::A11y { snapshot } => {
            json!({"url": snapshot.url, "title": snapshot.title, "nodes": snapshot.nodes.len()})
        }
        Output::Text { text } => json!({"chars": text.chars().count()}),
        other => serde_json::to_value(other).unwrap_or(Value::Null),
    }
}
