//! Turning provider replies into a whole assistant turn and a normalised [`crate::Reply`]:
//! per-family stream assemblers (SSE events in, the same body a non-streamed call returns out)
//! and the normalisation of that body into text, tool calls, stop reason and usage.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::anthropic::{self, ContentBlock, Delta, MessagesResponse, StreamEvent, ToolUseBlock};
use crate::chat::{self, ChatChunk, ChatResponse, ChatUsage};
use crate::responses::{self, Item, Response};
use crate::{Call, ExtraTool, LlmError, Stop, ToolCall, Usage};

// ---------------------------------------------------------------- Anthropic

/// Assembles `message_start … message_stop` into a [`MessagesResponse`].
#[derive(Default)]
pub(crate) struct AnthropicStream {
    message: Option<MessagesResponse>,
    /// Block by index, with its accumulated `partial_json` (tool_use input).
    blocks: BTreeMap<usize, (ContentBlock, String)>,
    done: bool,
}

impl AnthropicStream {
    /// Takes one event; a mid-stream `error` event is an [`LlmError::StreamError`].
    pub(crate) fn event(
        &mut self,
        ev: StreamEvent,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), LlmError> {
        match ev {
            StreamEvent::MessageStart { mut message } => {
                for (i, b) in std::mem::take(&mut message.content).into_iter().enumerate() {
                    self.blocks.insert(i, (b, String::new()));
                }
                self.message = Some(message);
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                self.blocks.insert(index, (content_block, String::new()));
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                let Some((block, json)) = self.blocks.get_mut(&index) else {
                    return Err(LlmError::Stream(format!(
                        "delta for unknown content block {index}"
                    )));
                };
                match (block, delta) {
                    (ContentBlock::Text(t), Delta::TextDelta { text }) => {
                        on_text(&text);
                        t.text.push_str(&text);
                    }
                    (ContentBlock::ToolUse(_), Delta::InputJsonDelta { partial_json }) => {
                        json.push_str(&partial_json);
                    }
                    (ContentBlock::Thinking(t), Delta::ThinkingDelta { thinking }) => {
                        t.thinking.push_str(&thinking);
                    }
                    (ContentBlock::Thinking(t), Delta::SignatureDelta { signature }) => {
                        t.signature.push_str(&signature);
                    }
                    // citations and deltas of blocks this crate keeps verbatim
                    _ => {}
                }
            }
            StreamEvent::ContentBlockStop { index } => {
                if let Some((block, json)) = self.blocks.get_mut(&index) {
                    finish_tool_input(block, json);
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                let Some(m) = &mut self.message else {
                    return Err(LlmError::Stream(
                        "message_delta before message_start".into(),
                    ));
                };
                m.stop_reason = delta.stop_reason.or(m.stop_reason.take());
                m.stop_sequence = delta.stop_sequence.or(m.stop_sequence.take());
                m.extra.extend(delta.extra);
                m.usage.output_tokens = usage.output_tokens;
                for (dst, src) in [
                    (&mut m.usage.input_tokens, usage.input_tokens),
                    (
                        &mut m.usage.cache_creation_input_tokens,
                        usage.cache_creation_input_tokens,
                    ),
                    (
                        &mut m.usage.cache_read_input_tokens,
                        usage.cache_read_input_tokens,
                    ),
                ] {
                    if src > 0 {
                        *dst = src;
                    }
                }
            }
            StreamEvent::MessageStop => self.done = true,
            StreamEvent::Ping | StreamEvent::Other(_) => {}
            StreamEvent::Error { error } => {
                return Err(LlmError::StreamError {
                    kind: error.kind,
                    message: error.message,
                });
            }
        }
        Ok(())
    }

    /// The assembled message, once `message_stop` arrived.
    pub(crate) fn finish(self) -> Result<MessagesResponse, LlmError> {
        if !self.done {
            return Err(LlmError::Stream("stream ended before message_stop".into()));
        }
        let mut m = self
            .message
            .ok_or_else(|| LlmError::Stream("no message_start".into()))?;
        m.content = self
            .blocks
            .into_values()
            .map(|(mut b, mut json)| {
                finish_tool_input(&mut b, &mut json);
                b
            })
            .collect();
        Ok(m)
    }
}

/// Parses the concatenated `partial_json` of a tool_use block into its input (kept as a JSON
/// string if it does not parse, so the call comes out malformed).
fn finish_tool_input(block: &mut ContentBlock, json: &mut String) {
    if let ContentBlock::ToolUse(t) = block
        && !json.is_empty()
    {
        let raw = std::mem::take(json);
        t.input = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
    }
}

/// Text, calls, stop reason and usage of an Anthropic reply; `extra` are the client's extra
/// tools (their `tool_use`s become [`Call::Function`]).
pub(crate) fn anthropic_reply(
    m: &MessagesResponse,
    extra: &[ExtraTool],
) -> (String, Vec<ToolCall>, Stop, Usage) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in &m.content {
        match b {
            ContentBlock::Text(t) => text.push_str(&t.text),
            ContentBlock::ToolUse(t) => calls.push(ToolCall {
                id: t.id.clone(),
                call: anthropic_call(t, extra),
            }),
            _ => {}
        }
    }
    let stop = match m.stop_reason.as_deref() {
        Some("end_turn") | None => Stop::EndTurn,
        Some("tool_use") => Stop::ToolUse,
        Some("pause_turn") => Stop::PauseTurn,
        Some("max_tokens") => Stop::MaxTokens,
        Some("refusal") => Stop::Refusal(refusal_detail(m.extra.get("stop_details"))),
        Some("model_context_window_exceeded") => Stop::ContextExceeded,
        Some(o) => Stop::Other(o.to_string()),
    };
    let u = m.usage;
    let usage = Usage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cache_creation_input_tokens: u.cache_creation_input_tokens,
        cache_read_input_tokens: u.cache_read_input_tokens,
    };
    (text, calls, stop, usage)
}

fn refusal_detail(d: Option<&Value>) -> Option<String> {
    let d = d?;
    ["explanation", "message", "reason", "category"]
        .iter()
        .find_map(|k| d.get(*k).and_then(Value::as_str))
        .map(str::to_string)
}

/// A tool_use block as a [`Call`]: the single computer tool as is, a toolset member as
/// `{"action": name, ...input}`, a call to one of the `extra` tools (no `toolset_name`) as a
/// [`Call::Function`] with the input as its arguments; anything else is malformed.
pub(crate) fn anthropic_call(t: &ToolUseBlock, extra: &[ExtraTool]) -> Call {
    let malformed = |error: &str| Call::Malformed {
        name: t.name.clone(),
        raw: match &t.input {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        },
        error: error.to_string(),
    };
    let Value::Object(input) = &t.input else {
        return malformed("the tool input is not a JSON object");
    };
    let member = match t.toolset_name.as_deref() {
        Some(anthropic::COMPUTER_TOOLSET) => true,
        Some(_) => return malformed("unknown toolset"),
        None if extra.iter().any(|e| e.name == t.name) => {
            return Call::Function {
                name: t.name.clone(),
                arguments: t.input.clone(),
            };
        }
        None => t.name != "computer" && anthropic::TOOLSET_MEMBERS.contains(&t.name.as_str()),
    };
    if member {
        let mut m = Map::with_capacity(input.len() + 1);
        m.insert("action".into(), Value::String(t.name.clone()));
        m.extend(
            input
                .iter()
                .filter(|(k, _)| *k != "action")
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        Call::Anthropic {
            input: Value::Object(m),
        }
    } else if t.name == "computer" {
        if input.get("action").and_then(Value::as_str).is_none() {
            return malformed("the computer tool input has no \"action\"");
        }
        Call::Anthropic {
            input: t.input.clone(),
        }
    } else {
        malformed("unknown tool")
    }
}

// ---------------------------------------------------------------- Responses

/// Assembles Responses stream events into the final [`Response`].
#[derive(Default)]
pub(crate) struct ResponsesStream {
    items: BTreeMap<usize, Item>,
    last: Option<Response>,
}

impl ResponsesStream {
    /// Takes one event; `response.failed` and `error` are [`LlmError::StreamError`]s.
    pub(crate) fn event(
        &mut self,
        ev: responses::StreamEvent,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), LlmError> {
        use responses::StreamEvent as E;
        match ev {
            E::OutputTextDelta { delta, .. } => on_text(&delta),
            E::OutputItemDone { output_index, item } => {
                self.items.insert(output_index, item);
            }
            E::Completed { response } | E::Incomplete { response } => self.last = Some(response),
            E::Failed { response } => return Err(failed(&response)),
            E::Error { code, message, .. } => {
                return Err(LlmError::StreamError {
                    kind: code.unwrap_or_else(|| "error".into()),
                    message,
                });
            }
            E::Created { .. } | E::InProgress { .. } | E::OutputItemAdded { .. } | E::Other(_) => {}
        }
        Ok(())
    }

    /// The final response (its output completed from `output_item.done` events if empty).
    pub(crate) fn finish(self) -> Result<Response, LlmError> {
        let mut r = self
            .last
            .ok_or_else(|| LlmError::Stream("stream ended before response.completed".into()))?;
        if r.output.is_empty() {
            r.output = self.items.into_values().collect();
        }
        Ok(r)
    }
}

/// The error of a `failed` response.
pub(crate) fn failed(r: &Response) -> LlmError {
    let e = r.error.as_ref();
    let s = |k: &str| e.and_then(|e| e.get(k)).and_then(Value::as_str);
    LlmError::StreamError {
        kind: s("code").unwrap_or("server_error").to_string(),
        message: s("message").unwrap_or("the response failed").to_string(),
    }
}

/// Text, calls, stop reason and usage of a Responses reply.
pub(crate) fn responses_reply(r: &Response) -> (String, Vec<ToolCall>, Stop, Usage) {
    let mut text = String::new();
    let mut refusal = None;
    let mut calls = Vec::new();
    for item in &r.output {
        match item {
            Item::Message(m) if m.role == "assistant" => {
                for p in &m.content {
                    match p {
                        responses::ContentPart::OutputText { text: t, .. } => text.push_str(t),
                        responses::ContentPart::Refusal { refusal: t } => refusal = Some(t.clone()),
                        _ => {}
                    }
                }
            }
            Item::ComputerCall(c) => {
                let actions = match (&c.actions, &c.action) {
                    (Some(a), _) if !a.is_empty() => Some(a.clone()),
                    (_, Some(a)) => Some(vec![a.clone()]),
                    _ => None,
                };
                let call = match actions {
                    Some(actions) => Call::OpenAi {
                        actions,
                        pending_safety_checks: c.pending_safety_checks.clone(),
                    },
                    None => Call::Malformed {
                        name: "computer".into(),
                        raw: serde_json::to_string(c).unwrap_or_default(),
                        error: "computer_call without action".into(),
                    },
                };
                calls.push(ToolCall {
                    id: c.call_id.clone(),
                    call,
                });
            }
            Item::FunctionCall(f) => calls.push(ToolCall {
                id: f.call_id.clone(),
                call: function_call(&f.name, &f.arguments),
            }),
            _ => {}
        }
    }
    let reason = r
        .incomplete_details
        .as_ref()
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str);
    let stop = match (r.status.as_str(), reason) {
        (_, _) if refusal.is_some() => Stop::Refusal(refusal),
        ("incomplete", Some("max_output_tokens")) => Stop::MaxTokens,
        ("incomplete", Some("content_filter")) => Stop::Refusal(None),
        ("incomplete", Some(o)) => Stop::Other(o.to_string()),
        ("completed", _) if !calls.is_empty() => Stop::ToolUse,
        ("completed", _) => Stop::EndTurn,
        (s, _) => Stop::Other(s.to_string()),
    };
    let usage = r.usage.as_ref().map_or_else(Usage::default, |u| {
        let cached = u.cached_tokens();
        Usage {
            input_tokens: u.input_tokens.saturating_sub(cached),
            output_tokens: u.output_tokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: cached,
        }
    });
    (text, calls, stop, usage)
}

/// A function call's arguments (a JSON string; empty = `{}`; double-encoded accepted) as a
/// [`Call::Function`], or [`Call::Malformed`].
pub(crate) fn function_call(name: &str, arguments: &str) -> Call {
    let malformed = |error: String| Call::Malformed {
        name: name.to_string(),
        raw: arguments.to_string(),
        error,
    };
    let trimmed = arguments.trim();
    if trimmed.is_empty() || trimmed == "null" {
        return Call::Function {
            name: name.to_string(),
            arguments: Value::Object(Map::new()),
        };
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(v @ Value::Object(_)) => Call::Function {
            name: name.to_string(),
            arguments: v,
        },
        Ok(Value::String(inner)) => match serde_json::from_str::<Value>(&inner) {
            Ok(v @ Value::Object(_)) => Call::Function {
                name: name.to_string(),
                arguments: v,
            },
            _ => malformed("the arguments are not a JSON object".into()),
        },
        Ok(_) => malformed("the arguments are not a JSON object".into()),
        Err(e) => malformed(format!("the arguments are not valid JSON: {e}")),
    }
}

// ---------------------------------------------------------------- Chat

/// Assembles Chat Completions chunks into a [`ChatResponse`].
#[derive(Default)]
pub(crate) struct ChatStream {
    id: String,
    text: String,
    saw_text: bool,
    /// index → (id, name, arguments)
    calls: BTreeMap<usize, (String, String, String)>,
    finish: Option<String>,
    usage: Option<ChatUsage>,
    done: bool,
}

impl ChatStream {
    /// Takes one SSE `data:` payload (`[DONE]`, a chunk, or an `{"error": ...}` object).
    pub(crate) fn data(
        &mut self,
        data: &str,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), LlmError> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let v: Value =
            serde_json::from_str(data).map_err(|e| LlmError::Decode(format!("chat chunk: {e}")))?;
        if let Some(err) = v.get("error") {
            let s = |k: &str| err.get(k).and_then(Value::as_str);
            return Err(LlmError::StreamError {
                kind: s("type").or(s("code")).unwrap_or("error").to_string(),
                message: s("message")
                    .map(str::to_string)
                    .unwrap_or_else(|| err.to_string()),
            });
        }
        let c: ChatChunk =
            serde_json::from_value(v).map_err(|e| LlmError::Decode(format!("chat chunk: {e}")))?;
        self.chunk(c, on_text);
        Ok(())
    }

    fn chunk(&mut self, c: ChatChunk, on_text: &mut (dyn FnMut(&str) + Send)) {
        if self.id.is_empty() {
            self.id = c.id;
        }
        if c.usage.is_some() {
            self.usage = c.usage;
        }
        for ch in c.choices.into_iter().filter(|ch| ch.index == 0) {
            if let Some(t) = ch.delta.content.filter(|t| !t.is_empty()) {
                on_text(&t);
                self.text.push_str(&t);
                self.saw_text = true;
            }
            for tc in ch.delta.tool_calls {
                let e = self.calls.entry(tc.index).or_default();
                if let Some(id) = tc.id.filter(|i| !i.is_empty()) {
                    e.0 = id;
                }
                if let Some(f) = tc.function {
                    if let Some(n) = f.name {
                        e.1.push_str(&n);
                    }
                    if let Some(a) = f.arguments {
                        e.2.push_str(&a);
                    }
                }
            }
            if ch.finish_reason.is_some() {
                self.finish = ch.finish_reason;
            }
        }
    }

    /// The assembled reply; a stream may end without `[DONE]` once a finish reason arrived.
    pub(crate) fn finish(self) -> Result<ChatResponse, LlmError> {
        if !self.done && self.finish.is_none() {
            return Err(LlmError::Stream(
                "stream ended before a finish_reason or [DONE]".into(),
            ));
        }
        let tool_calls = self
            .calls
            .into_values()
            .map(|(id, name, arguments)| chat::ToolCall {
                id,
                kind: "function".into(),
                function: chat::FunctionCall { name, arguments },
            })
            .collect();
        Ok(ChatResponse {
            id: self.id,
            choices: vec![chat::Choice {
                index: 0,
                message: chat::ResponseMessage {
                    role: "assistant".into(),
                    content: self.saw_text.then_some(self.text),
                    tool_calls,
                    extra: Map::new(),
                },
                finish_reason: self.finish,
            }],
            usage: self.usage,
            extra: Map::new(),
        })
    }
}

/// A normalised Chat reply: the assistant message to append and the [`crate::Reply`] parts.
pub(crate) struct ChatReply {
    pub content: Option<String>,
    pub tool_calls: Vec<chat::ToolCall>,
    pub text: String,
    pub calls: Vec<ToolCall>,
    pub stop: Stop,
    pub usage: Usage,
}

/// The assistant message of a Chat reply (tool calls without an id get `call_<n>`), and its
/// text, calls, stop reason and usage.
pub(crate) fn chat_reply(r: ChatResponse) -> Result<ChatReply, LlmError> {
    let choice = r
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| LlmError::Decode("the reply has no choices".into()))?;
    let mut tool_calls = choice.message.tool_calls;
    for (n, c) in tool_calls.iter_mut().enumerate() {
        if c.id.is_empty() {
            c.id = format!("call_{n}");
        }
    }
    let calls: Vec<ToolCall> = tool_calls
        .iter()
        .map(|c| ToolCall {
            id: c.id.clone(),
            call: function_call(&c.function.name, &c.function.arguments),
        })
        .collect();
    let stop = match choice.finish_reason.as_deref() {
        Some("length") => Stop::MaxTokens,
        Some("content_filter") => Stop::Refusal(None),
        _ if !calls.is_empty() => Stop::ToolUse,
        Some("stop") | None => Stop::EndTurn,
        Some(o) => Stop::Other(o.to_string()),
    };
    let usage = r.usage.map_or_else(Usage::default, |u| Usage {
        input_tokens: u.prompt_tokens,
        output_tokens: u.completion_tokens,
        ..Usage::default()
    });
    let text = choice.message.content.clone().unwrap_or_default();
    Ok(ChatReply {
        content: choice.message.content,
        tool_calls,
        text,
        calls,
        stop,
        usage,
    })
}

#[cfg(test)]
mod tests;
