//! [`Transcript`]: one provider conversation kept in that provider's own wire format, so
//! everything the model sent (thinking signatures, toolset names, reasoning items) goes back
//! verbatim; the client resends it whole each time (no `previous_response_id`).
//!
//! Also here: building each family's request from it (tools for the generation, Anthropic
//! prompt-cache breakpoints), answering tool calls, and keeping it under a budget (image
//! pruning in chunks like the reference loop, compaction that never separates a tool call from
//! its result).

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value, json};

use crate::anthropic::{self, CacheControl, ContentBlock, Message, MessagesRequest, Role};
use crate::chat::{self, ChatMessage, ChatRequest, MessageContent};
use crate::responses::{self, ComputerScreenshot, Item, ResponsesRequest};
use crate::{ExtraTool, Family, Generation, LlmError, ProviderSpec, Thinking, ToolOutcome};

/// The text that replaces a pruned screenshot.
pub const SCREENSHOT_OMITTED: &str = "[screenshot omitted]";
/// A 1×1 PNG standing in for a pruned `computer_call_output` screenshot (the Responses API
/// requires an image there).
const PLACEHOLDER_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
const TOKENS_PER_IMAGE: u32 = 1600;
/// Anthropic allows 4 cache breakpoints: the system prompt plus the 3 most recent user turns.
const CACHED_USER_TURNS: usize = 3;

/// A provider conversation (see the module docs).
#[derive(Clone)]
pub struct Transcript {
    generation: Generation,
    system: String,
    conv: Conv,
}

#[derive(Debug, Clone)]
enum Conv {
    Anthropic(Vec<Message>),
    Responses(Vec<Item>),
    Chat(Vec<ChatMessage>),
}

impl fmt::Debug for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transcript")
            .field("generation", &self.generation)
            .field("messages", &self.len())
            .field("images", &self.image_count())
            .finish()
    }
}

/// What kind of call the last reply made (to shape its result).
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    ToolUse { toolset: Option<String> },
    ComputerCall,
    FunctionCall,
    ChatCall,
}

/// A turn for compaction: consecutive items of one side.
struct Turn {
    start: usize,
    user: bool,
    /// A user turn that answers tool calls (cannot be separated from the turn before).
    results: bool,
}

impl Transcript {
    /// An empty conversation for `generation` with a system prompt (may be empty).
    pub fn new(generation: Generation, system: &str) -> Transcript {
        let conv = match generation.family() {
            Family::Anthropic => Conv::Anthropic(Vec::new()),
            Family::Responses => Conv::Responses(Vec::new()),
            Family::Chat => Conv::Chat(Vec::new()),
        };
        Transcript {
            generation,
            system: system.to_string(),
            conv,
        }
    }

    /// The tool generation this transcript is for.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The system prompt.
    pub fn system(&self) -> &str {
        &self.system
    }

    /// Number of messages (Anthropic, Chat) or items (Responses).
    pub fn len(&self) -> usize {
        match &self.conv {
            Conv::Anthropic(m) => m.len(),
            Conv::Responses(m) => m.len(),
            Conv::Chat(m) => m.len(),
        }
    }

    /// Whether nothing was said yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a user text (to the last user message if the conversation ends with one, for
    /// Anthropic, which wants alternating roles).
    pub fn push_user_text(&mut self, text: &str) {
        match &mut self.conv {
            Conv::Anthropic(m) => match m.last_mut() {
                Some(last) if last.role == Role::User => {
                    last.content.push(ContentBlock::text(text));
                }
                _ => m.push(Message {
                    role: Role::User,
                    content: vec![ContentBlock::text(text)],
                }),
            },
            Conv::Responses(m) => m.push(Item::user_text(text)),
            Conv::Chat(m) => m.push(ChatMessage::User {
                content: MessageContent::Text(text.to_string()),
            }),
        }
    }

    /// The unanswered calls of the last reply, in order.
    fn pending(&self) -> Vec<(String, Pending)> {
        match &self.conv {
            Conv::Anthropic(m) => match m.last() {
                Some(last) if last.role == Role::Assistant => last
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::ToolUse(t) => Some((
                            t.id.clone(),
                            Pending::ToolUse {
                                toolset: t.toolset_name.clone(),
                            },
                        )),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            },
            Conv::Responses(items) => {
                let tail = items
                    .iter()
                    .rposition(|i| !responses_assistant_side(i))
                    .map_or(0, |p| p + 1);
                items[tail..]
                    .iter()
                    .filter_map(|i| match i {
                        Item::ComputerCall(c) => Some((c.call_id.clone(), Pending::ComputerCall)),
                        Item::FunctionCall(c) => Some((c.call_id.clone(), Pending::FunctionCall)),
                        _ => None,
                    })
                    .collect()
            }
            Conv::Chat(m) => match m.last() {
                Some(ChatMessage::Assistant { tool_calls, .. }) => tool_calls
                    .iter()
                    .map(|c| (c.id.clone(), Pending::ChatCall))
                    .collect(),
                _ => Vec::new(),
            },
        }
    }

    /// Answers every tool call of the last reply, in the calls' order whatever the order of
    /// `results`. Error (and nothing changes) if a call id is unknown, answered twice or
    /// missing, or an OpenAI `computer_call` result has no screenshot.
    pub fn push_results(&mut self, results: Vec<ToolOutcome>) -> Result<(), LlmError> {
        let pending = self.pending();
        if pending.is_empty() {
            return Err(LlmError::Transcript(
                "the last reply made no tool calls".into(),
            ));
        }
        let mut by_id: HashMap<String, ToolOutcome> = HashMap::new();
        for r in results {
            if !pending.iter().any(|(id, _)| *id == r.call_id) {
                return Err(LlmError::Transcript(format!(
                    "result for unknown call id {:?}",
                    r.call_id
                )));
            }
            let id = r.call_id.clone();
            if by_id.insert(id.clone(), r).is_some() {
                return Err(LlmError::Transcript(format!("call {id:?} answered twice")));
            }
        }
        let mut ordered = Vec::with_capacity(pending.len());
        for (id, kind) in pending {
            let r = by_id
                .remove(&id)
                .ok_or_else(|| LlmError::Transcript(format!("no result for call {id:?}")))?;
            if kind == Pending::ComputerCall && r.image.is_none() {
                return Err(LlmError::Transcript(format!(
                    "the result of computer_call {id:?} needs a screenshot"
                )));
            }
            ordered.push((r, kind));
        }
        match &mut self.conv {
            Conv::Anthropic(m) => {
                let content = ordered
                    .into_iter()
                    .map(|(r, kind)| {
                        let mut content = Vec::new();
                        if let Some(t) = r.text.filter(|t| !t.is_empty()) {
                            content.push(ContentBlock::text(t));
                        }
                        if let Some(img) = r.image {
                            content.push(ContentBlock::image(img.media_type, img.base64));
                        }
                        let toolset = match kind {
                            Pending::ToolUse { toolset } => toolset,
                            _ => None,
                        };
                        ContentBlock::ToolResult(anthropic::ToolResultBlock {
                            tool_use_id: r.call_id,
                            content,
                            is_error: r.is_error,
                            toolset_name: toolset,
                            cache_control: None,
                            extra: Map::new(),
                        })
                    })
                    .collect();
                m.push(Message {
                    role: Role::User,
                    content,
                });
            }
            Conv::Responses(items) => {
                let mut texts = Vec::new();
                for (r, kind) in ordered {
                    let text = r
                        .text
                        .filter(|t| !t.is_empty())
                        .map(|t| error_text(t, r.is_error));
                    match kind {
                        Pending::FunctionCall => {
                            items.push(Item::FunctionCallOutput(responses::FunctionCallOutput {
                                call_id: r.call_id,
                                output: text.unwrap_or_else(|| "ok".into()),
                                extra: Map::new(),
                            }))
                        }
                        _ => {
                            let img = r.image.as_ref().map_or_else(
                                || ComputerScreenshot::data_url("image/png", PLACEHOLDER_PNG),
                                |i| ComputerScreenshot::data_url(&i.media_type, &i.base64),
                            );
                            items.push(Item::ComputerCallOutput(responses::ComputerCallOutput {
                                call_id: r.call_id,
                                acknowledged_safety_checks: r.acknowledged,
                                output: img,
                                current_url: r.current_url,
                                extra: Map::new(),
                            }));
                            texts.extend(text);
                        }
                    }
                }
                if !texts.is_empty() {
                    items.push(Item::Message(responses::MessageItem {
                        role: "user".into(),
                        content: texts
                            .into_iter()
                            .map(|text| responses::ContentPart::InputText { text })
                            .collect(),
                        id: None,
                        status: None,
                        extra: Map::new(),
                    }));
                }
            }
            Conv::Chat(m) => {
                let mut parts = Vec::new();
                for (r, _) in ordered {
                    let text = match r.text.filter(|t| !t.is_empty()) {
                        Some(t) => error_text(t, r.is_error),
                        None if r.is_error => "Error".into(),
                        None if r.image.is_some() => "Done; the screenshot follows.".into(),
                        None => "Done.".into(),
                    };
                    m.push(ChatMessage::Tool {
                        tool_call_id: r.call_id,
                        content: text,
                    });
                    if let Some(img) = r.image {
                        parts.push(chat::ContentPart::ImageUrl {
                            image_url: chat::ImageUrl {
                                url: format!("data:{};base64,{}", img.media_type, img.base64),
                                detail: None,
                            },
                        });
                    }
                }
                if !parts.is_empty() {
                    parts.insert(
                        0,
                        chat::ContentPart::Text {
                            text: "Screenshot after the tool calls above:".into(),
                        },
                    );
                    m.push(ChatMessage::User {
                        content: MessageContent::Parts(parts),
                    });
                }
            }
        }
        Ok(())
    }

    /// A rough token count: chars/4 for text, ~1600 per image. Good enough for budgets.
    pub fn estimate_tokens(&self) -> u32 {
        fn walk(v: &Value, chars: &mut usize, images: &mut usize) {
            match v {
                Value::String(s) => *chars += s.chars().count(),
                Value::Array(a) => a.iter().for_each(|v| walk(v, chars, images)),
                Value::Object(o) => {
                    match o.get("type").and_then(Value::as_str) {
                        Some("image" | "input_image" | "image_url") => {
                            *images += 1;
                            return;
                        }
                        Some("computer_screenshot") => {
                            if !is_placeholder(o.get("image_url").and_then(Value::as_str)) {
                                *images += 1;
                            }
                            return;
                        }
                        _ => {}
                    }
                    o.values().for_each(|v| walk(v, chars, images));
                }
                _ => {}
            }
        }
        let (mut chars, mut images) = (self.system.chars().count(), 0);
        walk(&self.conv_json(), &mut chars, &mut images);
        let t = chars / 4 + images * TOKENS_PER_IMAGE as usize;
        u32::try_from(t).unwrap_or(u32::MAX)
    }

    /// Screenshots (images) in the conversation, pruned ones not counted.
    pub fn image_count(&self) -> usize {
        let mut n = 0;
        // visiting without replacing does not modify; a clone keeps &self
        self.clone().visit_images(|_| {
            n += 1;
            false
        });
        n
    }

    /// Calls `replace(i)` for every image, oldest first (i = 0, 1, ...), replacing those for
    /// which it returns true; returns how many were replaced.
    fn visit_images(&mut self, mut replace: impl FnMut(usize) -> bool) -> usize {
        let mut i = 0;
        let mut replaced = 0;
        let mut next = |replaced: &mut usize| {
            let r = replace(i);
            i += 1;
            if r {
                *replaced += 1;
            }
            r
        };
        match &mut self.conv {
            Conv::Anthropic(m) => {
                fn blocks(
                    bs: &mut [ContentBlock],
                    next: &mut dyn FnMut(&mut usize) -> bool,
                    replaced: &mut usize,
                ) {
                    for b in bs {
                        match b {
                            ContentBlock::Image(_) if next(replaced) => {
                                *b = ContentBlock::text(SCREENSHOT_OMITTED);
                            }
                            ContentBlock::ToolResult(r) => blocks(&mut r.content, next, replaced),
                            _ => {}
                        }
                    }
                }
                for msg in m {
                    blocks(&mut msg.content, &mut next, &mut replaced);
                }
            }
            Conv::Responses(items) => {
                for item in items {
                    match item {
                        Item::Message(msg) => {
                            for p in &mut msg.content {
                                if matches!(p, responses::ContentPart::InputImage { .. })
                                    && next(&mut replaced)
                                {
                                    *p = responses::ContentPart::InputText {
                                        text: SCREENSHOT_OMITTED.into(),
                                    };
                                }
                            }
                        }
                        Item::ComputerCallOutput(o)
                            if !is_placeholder(o.output.image_url.as_deref())
                                && next(&mut replaced) =>
                        {
                            o.output = ComputerScreenshot::data_url("image/png", PLACEHOLDER_PNG);
                        }
                        _ => {}
                    }
                }
            }
            Conv::Chat(m) => {
                for msg in m {
                    if let ChatMessage::User {
                        content: MessageContent::Parts(parts),
                    } = msg
                    {
                        for p in parts {
                            if matches!(p, chat::ContentPart::ImageUrl { .. })
                                && next(&mut replaced)
                            {
                                *p = chat::ContentPart::Text {
                                    text: SCREENSHOT_OMITTED.into(),
                                };
                            }
                        }
                    }
                }
            }
        }
        replaced
    }

    /// Replaces the oldest screenshots with the text [`SCREENSHOT_OMITTED`], removing them in
    /// multiples of `chunk` (to bust the prompt cache rarely) so at most `keep + chunk - 1`
    /// remain: the reference loop's `_maybe_filter_to_n_most_recent_images`. An OpenAI
    /// `computer_call_output` keeps a 1×1 placeholder image (the API requires one). Returns how
    /// many were removed.
    pub fn prune_images(&mut self, keep: usize, chunk: usize) -> usize {
        let chunk = chunk.max(1);
        let total = self.image_count();
        let mut remove = total.saturating_sub(keep);
        remove -= remove % chunk;
        if remove == 0 {
            return 0;
        }
        self.visit_images(|i| i < remove)
    }

    fn turns(&self) -> Vec<Turn> {
        let sides: Vec<(bool, bool)> = match &self.conv {
            Conv::Anthropic(m) => m
                .iter()
                .map(|msg| {
                    let user = msg.role == Role::User;
                    let results = msg
                        .content
                        .iter()
                        .any(|b| matches!(b, ContentBlock::ToolResult(_)));
                    (user, results)
                })
                .collect(),
            Conv::Responses(items) => items
                .iter()
                .map(|i| {
                    let results =
                        matches!(i, Item::ComputerCallOutput(_) | Item::FunctionCallOutput(_));
                    (!responses_assistant_side(i), results)
                })
                .collect(),
            Conv::Chat(m) => m
                .iter()
                .map(|msg| {
                    (
                        !matches!(msg, ChatMessage::Assistant { .. }),
                        matches!(msg, ChatMessage::Tool { .. }),
                    )
                })
                .collect(),
        };
        let group = !matches!(self.conv, Conv::Anthropic(_));
        let mut turns: Vec<Turn> = Vec::new();
        for (i, (user, results)) in sides.into_iter().enumerate() {
            match turns.last() {
                Some(t) if group && t.user == user => {}
                _ => turns.push(Turn {
                    start: i,
                    user,
                    results,
                }),
            }
        }
        turns
    }

    /// The index before which [`Transcript::compact`] drops everything (0 = nothing).
    fn cut_index(&self, keep_turns: usize) -> usize {
        let keep = keep_turns.max(1);
        let turns = self.turns();
        let users: Vec<usize> = (0..turns.len()).filter(|&i| turns[i].user).collect();
        if users.len() <= keep {
            return 0;
        }
        let mut ti = users[users.len() - keep];
        while ti > 0 && turns[ti].user && turns[ti].results {
            ti -= 1;
        }
        if turns[ti].user && turns[ti].results {
            return 0;
        }
        turns[ti].start
    }

    /// Replaces everything before the last `keep_turns` (at least 1) user turns with one user
    /// text "Summary of the earlier conversation:\n{summary}". Never cuts between a tool call
    /// and its result: if the oldest kept user turn answers tool calls, the assistant turn
    /// that made them is kept too. Returns how many messages (items) were dropped.
    pub fn compact(&mut self, summary: &str, keep_turns: usize) -> usize {
        let cut = self.cut_index(keep_turns);
        if cut == 0 {
            return 0;
        }
        let text = format!("Summary of the earlier conversation:\n{summary}");
        match &mut self.conv {
            Conv::Anthropic(m) => {
                m.drain(..cut);
                match m.first_mut() {
                    Some(first) if first.role == Role::User => {
                        first.content.insert(0, ContentBlock::text(text))
                    }
                    _ => m.insert(
                        0,
                        Message {
                            role: Role::User,
                            content: vec![ContentBlock::text(text)],
                        },
                    ),
                }
            }
            Conv::Responses(items) => {
                items.drain(..cut);
                items.insert(0, Item::user_text(text));
            }
            Conv::Chat(m) => {
                m.drain(..cut);
                m.insert(
                    0,
                    ChatMessage::User {
                        content: MessageContent::Text(text),
                    },
                );
            }
        }
        cut
    }

    /// Plain-text rendering of the turns [`Transcript::compact`] would drop (for the
    /// summarization request); empty if it would drop nothing.
    pub fn text_before(&self, keep_turns: usize) -> String {
        let cut = self.cut_index(keep_turns);
        let mut out = String::new();
        let mut line = |who: &str, s: &str| {
            out.push_str(who);
            out.push_str(": ");
            out.push_str(s);
            out.push('\n');
        };
        match &self.conv {
            Conv::Anthropic(m) => {
                for msg in &m[..cut] {
                    let who = if msg.role == Role::User {
                        "User"
                    } else {
                        "Assistant"
                    };
                    for b in &msg.content {
                        match b {
                            ContentBlock::Text(t) => line(who, &t.text),
                            ContentBlock::Image(_) => line(who, "[screenshot]"),
                            ContentBlock::ToolUse(t) => {
                                line("Assistant action", &format!("{} {}", t.name, t.input))
                            }
                            ContentBlock::ToolResult(r) => {
                                let mut s = String::new();
                                if r.is_error {
                                    s.push_str("error: ");
                                }
                                for c in &r.content {
                                    match c {
                                        ContentBlock::Text(t) => s.push_str(&t.text),
                                        ContentBlock::Image(_) => s.push_str(" [screenshot]"),
                                        _ => {}
                                    }
                                }
                                line("Tool result", s.trim());
                            }
                            _ => {}
                        }
                    }
                }
            }
            Conv::Responses(items) => {
                for item in &items[..cut] {
                    match item {
                        Item::Message(msg) => {
                            let who = if msg.role == "assistant" {
                                "Assistant"
                            } else {
                                "User"
                            };
                            for p in &msg.content {
                                match p {
                                    responses::ContentPart::InputText { text }
                                    | responses::ContentPart::OutputText { text, .. } => {
                                        line(who, text)
                                    }
                                    responses::ContentPart::InputImage { .. } => {
                                        line(who, "[screenshot]")
                                    }
                                    responses::ContentPart::Refusal { refusal } => {
                                        line(who, refusal)
                                    }
                                    responses::ContentPart::Other(_) => {}
                                }
                            }
                        }
                        Item::ComputerCall(c) => {
                            let actions = c
                                .actions
                                .clone()
                                .unwrap_or_else(|| c.action.clone().into_iter().collect());
                            line("Assistant action", &Value::from(actions).to_string());
                        }
                        Item::FunctionCall(c) => {
                            line("Assistant action", &format!("{} {}", c.name, c.arguments))
                        }
                        Item::ComputerCallOutput(o) => line(
                            "Tool result",
                            &match &o.current_url {
                                Some(u) => format!("[screenshot] at {u}"),
                                None => "[screenshot]".into(),
                            },
                        ),
                        Item::FunctionCallOutput(o) => line("Tool result", &o.output),
                        _ => {}
                    }
                }
            }
            Conv::Chat(m) => {
                for msg in &m[..cut] {
                    match msg {
                        ChatMessage::System { .. } => {}
                        ChatMessage::User { content } => match content {
                            MessageContent::Text(t) => line("User", t),
                            MessageContent::Parts(parts) => {
                                for p in parts {
                                    match p {
                                        chat::ContentPart::Text { text } => line("User", text),
                                        chat::ContentPart::ImageUrl { .. } => {
                                            line("User", "[screenshot]")
                                        }
                                    }
                                }
                            }
                        },
                        ChatMessage::Assistant {
                            content,
                            tool_calls,
                            ..
                        } => {
                            if let Some(c) = content.as_deref().filter(|c| !c.is_empty()) {
                                line("Assistant", c);
                            }
                            for c in tool_calls {
                                line(
                                    "Assistant action",
                                    &format!("{} {}", c.function.name, c.function.arguments),
                                );
                            }
                        }
                        ChatMessage::Tool { content, .. } => line("Tool result", content),
                    }
                }
            }
        }
        out
    }

    fn conv_json(&self) -> Value {
        match &self.conv {
            Conv::Anthropic(m) => serde_json::to_value(m),
            Conv::Responses(m) => serde_json::to_value(m),
            Conv::Chat(m) => serde_json::to_value(m),
        }
        .unwrap_or(Value::Null)
    }

    /// The conversation as JSON: `{"generation", "system", "messages"}` (debugging, tests).
    pub fn to_json(&self) -> Value {
        json!({
            "generation": self.generation,
            "system": self.system,
            "messages": self.conv_json(),
        })
    }

    // ---- requests ----

    /// The Anthropic request: system block and the 3 most recent user turns' last blocks get
    /// cache breakpoints; tools (the computer tool, then `extra` as client tools) and thinking
    /// per the spec.
    pub(crate) fn anthropic_request(
        &self,
        spec: &ProviderSpec,
        extra: &[ExtraTool],
    ) -> MessagesRequest {
        let Conv::Anthropic(m) = &self.conv else {
            return MessagesRequest::default();
        };
        let mut messages = m.clone();
        place_cache_breakpoints(&mut messages);
        let (w, h) = spec.display;
        let tool = match spec.generation {
            Generation::Computer20250124 => anthropic::Tool::computer_20250124(w, h),
            Generation::Computer20251124 => anthropic::Tool::computer_20251124(w, h),
            _ => anthropic::Tool::computer_toolset_20260801(),
        };
        let (thinking, output_config) = match &spec.thinking {
            Some(Thinking::Adaptive { effort }) => (
                Some(json!({"type": "adaptive"})),
                effort.as_ref().map(|e| json!({"effort": e})),
            ),
            Some(Thinking::Budget(n)) => {
                (Some(json!({"type": "enabled", "budget_tokens": n})), None)
            }
            None => (None, None),
        };
        let mut tools = Vec::with_capacity(1 + extra.len());
        tools.push(tool);
        tools.extend(extra.iter().map(ExtraTool::anthropic));
        MessagesRequest {
            model: spec.model.clone(),
            max_tokens: spec.max_tokens,
            system: system_blocks(&self.system),
            messages,
            tools,
            stream: spec.stream,
            thinking,
            output_config,
            extra: Map::new(),
        }
    }

    /// The Responses request: the whole input, the generation's computer tool (then `extra` as
    /// function tools), instructions = system prompt, `truncation: "auto"` for the preview.
    pub(crate) fn responses_request(
        &self,
        spec: &ProviderSpec,
        extra: &[ExtraTool],
    ) -> ResponsesRequest {
        let Conv::Responses(items) = &self.conv else {
            return ResponsesRequest::default();
        };
        let (tool, truncation) = match spec.generation {
            Generation::ComputerUsePreview => (
                responses::Tool::ComputerUsePreview {
                    display_width: spec.display.0,
                    display_height: spec.display.1,
                    environment: "browser".into(),
                },
                Some("auto".to_string()),
            ),
            _ => (responses::Tool::Computer, None),
        };
        let mut tools = Vec::with_capacity(1 + extra.len());
        tools.push(tool);
        tools.extend(extra.iter().map(ExtraTool::responses));
        ResponsesRequest {
            model: spec.model.clone(),
            input: items.clone(),
            tools,
            instructions: (!self.system.is_empty()).then(|| self.system.clone()),
            truncation,
            previous_response_id: None,
            stream: spec.stream,
            reasoning: None,
            max_output_tokens: Some(spec.max_tokens),
            extra: Map::new(),
        }
    }

    /// The Chat Completions request: system message first, the function tools then `extra`,
    /// `tool_choice: "auto"`, usage in the stream.
    pub(crate) fn chat_request(
        &self,
        spec: &ProviderSpec,
        functions: &[chat::ToolDef],
        extra: &[ExtraTool],
    ) -> ChatRequest {
        let Conv::Chat(m) = &self.conv else {
            return ChatRequest::default();
        };
        let mut messages = Vec::with_capacity(m.len() + 1);
        if !self.system.is_empty() {
            messages.push(ChatMessage::System {
                content: MessageContent::Text(self.system.clone()),
            });
        }
        messages.extend(m.iter().cloned());
        let mut tools = functions.to_vec();
        tools.extend(extra.iter().map(ExtraTool::chat));
        ChatRequest {
            model: spec.model.clone(),
            messages,
            tool_choice: (!tools.is_empty()).then(|| json!("auto")),
            tools,
            stream: spec.stream,
            stream_options: spec.stream.then_some(chat::StreamOptions {
                include_usage: true,
            }),
            max_tokens: Some(spec.max_tokens),
            extra: Map::new(),
        }
    }

    // ---- appending replies ----

    /// Appends an Anthropic assistant turn verbatim (an empty one is skipped: the API rejects
    /// empty non-final assistant messages). The continuation of a paused turn (`pause_turn`:
    /// the last message is that assistant turn, sent back as-is) joins it, so roles alternate.
    pub(crate) fn push_anthropic(&mut self, content: Vec<ContentBlock>) {
        if let Conv::Anthropic(m) = &mut self.conv
            && !content.is_empty()
        {
            if let Some(last) = m.last_mut()
                && last.role == Role::Assistant
            {
                last.content.extend(content);
                return;
            }
            m.push(Message {
                role: Role::Assistant,
                content,
            });
        }
    }

    /// Appends Responses output items verbatim.
    pub(crate) fn push_responses(&mut self, output: Vec<Item>) {
        if let Conv::Responses(items) = &mut self.conv {
            items.extend(output);
        }
    }

    /// Appends a Chat assistant message.
    pub(crate) fn push_chat(&mut self, content: Option<String>, tool_calls: Vec<chat::ToolCall>) {
        if let Conv::Chat(m) = &mut self.conv {
            let content = match content {
                Some(c) => Some(c),
                None if tool_calls.is_empty() => Some(String::new()),
                None => None,
            };
            m.push(ChatMessage::Assistant {
                content,
                tool_calls,
                extra: Map::new(),
            });
        }
    }
}

fn responses_assistant_side(i: &Item) -> bool {
    match i {
        Item::Message(m) => m.role == "assistant",
        Item::ComputerCallOutput(_) | Item::FunctionCallOutput(_) => false,
        _ => true,
    }
}

fn is_placeholder(url: Option<&str>) -> bool {
    url.is_some_and(|u| u.ends_with(PLACEHOLDER_PNG))
}

fn error_text(t: String, is_error: bool) -> String {
    if is_error && !t.to_ascii_lowercase().starts_with("error") {
        format!("Error: {t}")
    } else {
        t
    }
}

fn system_blocks(system: &str) -> Option<Vec<anthropic::TextBlock>> {
    (!system.is_empty()).then(|| {
        vec![anthropic::TextBlock {
            text: system.to_string(),
            cache_control: Some(CacheControl::ephemeral()),
            extra: Map::new(),
        }]
    })
}

/// Clears every breakpoint in `messages`, then puts one on the last block of each of the 3
/// most recent user messages (the reference loop's `_inject_prompt_caching`).
pub(crate) fn place_cache_breakpoints(messages: &mut [Message]) {
    for m in messages.iter_mut() {
        for b in &mut m.content {
            if b.cache_control().is_some()
                || matches!(b, ContentBlock::Other(Value::Object(o)) if o.contains_key("cache_control"))
            {
                b.set_cache_control(None);
            }
        }
    }
    let mut left = CACHED_USER_TURNS;
    for m in messages.iter_mut().rev() {
        if left == 0 {
            break;
        }
        if m.role == Role::User {
            if let Some(last) = m.content.last_mut() {
                last.set_cache_control(Some(CacheControl::ephemeral()));
            }
            left -= 1;
        }
    }
}

#[cfg(test)]
mod tests;
