//! Rendering: a scripted step becomes a provider-neutral [`Turn`], which each family module turns
//! into that provider's JSON reply and its SSE event sequence.

pub mod anthropic;
pub mod chat;
pub mod responses;

use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::Value;

use crate::script::{Call, Fault, SafetyCheck, Step};

/// Text the fake sends for the faults that are replies.
pub const PAUSE_TEXT: &str = "Let me keep working on that.";
/// Text of a refusal.
pub const REFUSAL_TEXT: &str = "I can't help with that.";
/// Text of a reply cut at max tokens.
pub const MAX_TOKENS_TEXT: &str = "This reply was cut off at the output tok";
/// Text streamed before a mid-stream error.
pub const MID_STREAM_TEXT: &str = "Working on it, one moment while I look at the screen";
/// The unknown action of a malformed call.
pub const MALFORMED_ACTION: &str = "teleport";

/// Why a turn ended (mapped to each family's stop reason / finish reason / status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A normal end of turn.
    EndTurn,
    /// The turn asks for tool results.
    ToolUse,
    /// Anthropic `pause_turn` (other families: a normal end).
    PauseTurn,
    /// A refusal.
    Refusal,
    /// Cut at the output token limit.
    MaxTokens,
}

/// A provider-neutral model turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// Thinking / reasoning text sent first.
    pub thinking: Option<String>,
    /// Assistant text (before the calls, if any).
    pub text: Option<String>,
    /// Computer calls, Anthropic single-tool input shape.
    pub calls: Vec<Call>,
    /// A pending safety check for the (first) Responses computer call.
    pub safety_check: Option<SafetyCheck>,
    /// How the turn ends.
    pub end: End,
    /// The calls are deliberately invalid (unknown action; Chat arguments that are not JSON).
    pub malformed: bool,
}

impl Turn {
    /// A plain text reply that ends the turn.
    pub fn text(text: impl Into<String>) -> Turn {
        Turn {
            thinking: None,
            text: Some(text.into()),
            calls: Vec::new(),
            safety_check: None,
            end: End::EndTurn,
            malformed: false,
        }
    }

    /// The turn a step renders as; `None` for transport faults (status, timeout,
    /// x_should_retry_false), which the server answers without a reply body of this kind.
    pub fn from_step(step: &Step) -> Option<Turn> {
        let thinking = |on: bool| on.then(|| "The user wants me to act on the screen.".to_string());
        Some(match step {
            Step::Text(t) => Turn {
                thinking: thinking(t.thinking),
                ..Turn::text(t.text.clone())
            },
            Step::Calls(c) => Turn {
                thinking: thinking(c.thinking),
                text: c.text.clone(),
                calls: c.calls.clone(),
                safety_check: c.safety_check.clone(),
                end: End::ToolUse,
                malformed: false,
            },
            Step::Fault(f) => match f {
                Fault::PauseTurn => Turn {
                    end: End::PauseTurn,
                    ..Turn::text(PAUSE_TEXT)
                },
                Fault::Refusal => Turn {
                    end: End::Refusal,
                    ..Turn::text(REFUSAL_TEXT)
                },
                Fault::MaxTokens => Turn {
                    end: End::MaxTokens,
                    ..Turn::text(MAX_TOKENS_TEXT)
                },
                Fault::MidStreamError => Turn::text(MID_STREAM_TEXT),
                Fault::Malformed => {
                    let mut m = serde_json::Map::new();
                    m.insert("action".into(), MALFORMED_ACTION.into());
                    m.insert("coordinate".into(), serde_json::json!([1, 2]));
                    Turn {
                        thinking: None,
                        text: None,
                        calls: vec![Call(m)],
                        safety_check: None,
                        end: End::ToolUse,
                        malformed: true,
                    }
                }
                Fault::Status { .. } | Fault::Timeout { .. } | Fault::XShouldRetryFalse { .. } => {
                    return None;
                }
            },
        })
    }
}

/// Per-request facts the renderers need.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The request's `model`, echoed.
    pub model: String,
    /// The input token estimate of the request ([`estimate_input_tokens`]).
    pub input_tokens: u64,
}

/// Why a turn could not be rendered for a family.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The action has no equivalent in the family's action set.
    #[error("action {0:?} has no {1} equivalent")]
    NoEquivalent(String, &'static str),
}

/// `prefix` + `n` random alphanumerics.
pub fn rand_id(prefix: &str, n: usize) -> String {
    let tail: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(n)
        .map(char::from)
        .collect();
    format!("{prefix}{tail}")
}

/// A chars/4 estimate of a request's input tokens, plus 1600 per image (image payloads are
/// not counted as characters).
pub fn estimate_input_tokens(body: &Value) -> u64 {
    let mut chars = 0u64;
    let mut images = 0u64;
    walk_size(body, &mut chars, &mut images);
    chars / 4 + images * 1600
}

fn is_image(obj: &serde_json::Map<String, Value>) -> bool {
    matches!(
        obj.get("type").and_then(Value::as_str),
        Some("image" | "input_image" | "computer_screenshot" | "image_url")
    )
}

fn walk_size(v: &Value, chars: &mut u64, images: &mut u64) {
    match v {
        Value::Object(o) if is_image(o) => *images += 1,
        Value::Object(o) => {
            for (k, v) in o {
                *chars += k.len() as u64;
                walk_size(v, chars, images);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| walk_size(v, chars, images)),
        Value::String(s) => *chars += s.chars().count() as u64,
        other => *chars += other.to_string().len() as u64,
    }
}

/// Output tokens of a reply: its serialized size / 4, at least 1.
pub fn output_tokens(reply_content: &Value) -> u64 {
    (reply_content.to_string().len() as u64 / 4).max(1)
}

/// Splits `s` into pieces of about `n` chars (on char boundaries); never empty for a non-empty
/// string, one empty piece for an empty one.
pub fn chunks(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

/// Seconds since the epoch (for `created` fields).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn images_count_1600_and_their_bytes_do_not() {
        let small = json!({"messages": [{"role": "user", "content": "abcdefgh"}]});
        let with_img = json!({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A".repeat(100_000)}}
        ]}]});
        assert!(estimate_input_tokens(&small) < 20);
        let t = estimate_input_tokens(&with_img);
        assert!((1600..1700).contains(&t), "{t}");
    }

    #[test]
    fn chunks_respect_char_boundaries() {
        assert_eq!(chunks("héllo", 2), vec!["hé", "ll", "o"]);
        assert_eq!(chunks("", 4), vec![""]);
    }
}
