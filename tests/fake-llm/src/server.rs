//! The HTTP server: the three provider endpoints (validate, pop a step, render JSON or SSE,
//! inject faults), the control endpoints (`/_script`, `/_requests`, `/_violations`, `/_stats`),
//! and the shared state they work on.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::Config;
use crate::render::{self, Ctx, End, Turn, anthropic as ra, chat as rc, rand_id, responses as rr};
use crate::script::{Fault, Step, parse_steps};
use crate::validate::{self, Memory, Violation};

/// The provider family of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `POST /v1/messages`
    Anthropic,
    /// `POST /v1/responses`
    Responses,
    /// `POST /v1/chat/completions`
    Chat,
}

impl Family {
    /// The name used in records.
    pub fn name(self) -> &'static str {
        match self {
            Family::Anthropic => "anthropic",
            Family::Responses => "responses",
            Family::Chat => "chat",
        }
    }
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Step>,
    requests: Vec<Value>,
    violations: Vec<Value>,
    per_path: BTreeMap<String, u64>,
    faults: BTreeMap<String, u64>,
    exhausted: u64,
    summaries: u64,
    rejected: u64,
    script_errors: u64,
    mem: Memory,
}

struct Shared {
    api_key: String,
    inner: Mutex<Inner>,
}

#[derive(Clone)]
struct App(Arc<Shared>);

impl App {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The router of a fake server (provider and control endpoints).
pub fn router(config: Config) -> Router {
    let app = App(Arc::new(Shared {
        api_key: config.api_key,
        inner: Mutex::new(Inner::default()),
    }));
    Router::new()
        .route("/v1/messages", post(anthropic))
        .route("/v1/responses", post(responses))
        .route("/v1/chat/completions", post(chat))
        .route("/_script", post(script_push).delete(script_clear))
        .route("/_requests", get(requests).delete(requests_clear))
        .route("/_violations", get(violations))
        .route("/_stats", get(stats))
        .layer(DefaultBodyLimit::max(64 << 20))
        .with_state(app)
}

async fn anthropic(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    handle(&app, Family::Anthropic, &uri, &headers, &body).await
}

async fn responses(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    handle(&app, Family::Responses, &uri, &headers, &body).await
}

async fn chat(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    handle(&app, Family::Chat, &uri, &headers, &body).await
}

/// What the endpoint answers, decided under the lock and sent after it.
enum Out {
    Json(Value),
    /// Frames already in wire form; `abort` ends the body with an error (connection cut).
    Stream {
        frames: Vec<String>,
        abort: bool,
    },
    Error {
        status: u16,
        body: Value,
        headers: Vec<(&'static str, String)>,
    },
    Delay {
        ms: u64,
        then: Box<Out>,
    },
}

const SECRET_HEADERS: [&str; 4] = [
    "x-api-key",
    "authorization",
    "api-key",
    "proxy-authorization",
];

fn redacted_headers(headers: &HeaderMap) -> Value {
    let mut out = serde_json::Map::new();
    for (name, value) in headers {
        let v = if SECRET_HEADERS.contains(&name.as_str()) {
            "***".to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        out.insert(name.as_str().to_string(), Value::String(v));
    }
    Value::Object(out)
}

fn error_out(family: Family, status: u16, message: &str, request_id: &str) -> Out {
    let body = match family {
        Family::Anthropic => ra::error_body(status, message, request_id),
        Family::Responses | Family::Chat => rr::error_body(status, message),
    };
    Out::Error {
        status,
        body,
        headers: Vec::new(),
    }
}

fn fault_message(status: u16) -> &'static str {
    match status {
        429 => "Number of request tokens has exceeded your per-minute rate limit",
        529 => "Overloaded",
        504 => "Request timed out",
        s if s >= 500 => "Internal server error",
        _ => "Request failed",
    }
}

async fn handle(
    app: &App,
    family: Family,
    uri: &Uri,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Response {
    let request_id = rand_id("req_", 24);
    let out = decide(app, family, uri, headers, raw, &request_id);
    respond(family, out, &request_id).await
}

fn decide(
    app: &App,
    family: Family,
    uri: &Uri,
    headers: &HeaderMap,
    raw: &Bytes,
    request_id: &str,
) -> Out {
    let parsed: Result<Value, _> = serde_json::from_slice(raw);
    let body = parsed.as_ref().cloned().unwrap_or(Value::Null);
    let has_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let mut g = app.lock();
    let inner = &mut *g;
    *inner.per_path.entry(uri.path().to_string()).or_default() += 1;
    let key = app.0.api_key.as_str();
    let mut violations = match family {
        Family::Anthropic => validate::anthropic::validate(headers, &body, &inner.mem, key),
        Family::Responses => {
            validate::responses::validate(headers, &body, &inner.mem, key, has_tools)
        }
        Family::Chat => validate::chat::validate(headers, &body, key),
    };
    if let Err(e) = &parsed
        && violations.first().is_none_or(|v| v.status != 401)
    {
        violations.insert(
            0,
            Violation::bad(format!("There was an error parsing the body: {e}")),
        );
    }
    if violations.is_empty()
        && has_tools
        && let Some(Step::Calls(step)) = inner.queue.front()
    {
        violations.extend(undeclared_tool_calls(family, &body, step));
    }
    let index = inner.requests.len();
    let mut served = String::new();
    let out = if let Some(first) = violations.first() {
        inner.rejected += 1;
        served.push_str("rejected");
        let status = if violations.iter().any(|v| v.status == 401) {
            401
        } else {
            first.status
        };
        let message = violations
            .iter()
            .filter(|v| v.status == status)
            .map(|v| v.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        error_out(family, status, &message, request_id)
    } else if !has_tools {
        inner.summaries += 1;
        served.push_str("summary");
        let turn = Turn::text(summary_text(family, &body));
        render_turn(inner, family, &turn, &body, None, false)
    } else {
        inner.mem.paused = None;
        inner.mem.responses_outstanding.clear();
        let step = inner.queue.pop_front();
        let step = step.unwrap_or_else(|| {
            inner.exhausted += 1;
            Step::Text(crate::script::TextStep {
                text: "(script exhausted)".into(),
                thinking: false,
            })
        });
        served = step.label();
        if let Step::Fault(f) = &step {
            *inner.faults.entry(f.kind().to_string()).or_default() += 1;
        }
        match (&step, Turn::from_step(&step)) {
            (Step::Fault(f), None) => transport_fault(family, f, request_id),
            (step, Some(turn)) => {
                let mid = matches!(step, Step::Fault(Fault::MidStreamError));
                render_turn(inner, family, &turn, &body, Some(step), mid)
            }
            (_, None) => error_out(family, 500, "fake-llm: step has no reply", request_id),
        }
    };
    if let Out::Error {
        status: 500,
        body: b,
        ..
    } = &out
        && b.to_string().contains("fake-llm:")
    {
        inner.script_errors += 1;
    }
    for v in &violations {
        inner.violations.push(json!({
            "request": index, "path": uri.path(), "family": family.name(),
            "status": v.status, "message": v.message,
        }));
    }
    inner.requests.push(json!({
        "index": index,
        "path": uri.path(),
        "query": uri.query(),
        "headers": redacted_headers(headers),
        "body": parsed.unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned())),
        "family": family.name(),
        "violations": violations.iter().map(|v| v.message.clone()).collect::<Vec<_>>(),
        "served": served,
    }));
    out
}

/// A violation for each scripted `{"tool": name}` call whose tool the request does not declare
/// (a real model only calls tools it was given).
fn undeclared_tool_calls(
    family: Family,
    body: &Value,
    step: &crate::script::CallsStep,
) -> Vec<Violation> {
    let declared = validate::declared_tools(family, body);
    step.calls
        .iter()
        .filter_map(|c| c.tool())
        .filter(|name| !declared.contains(*name))
        .map(|name| {
            Violation::bad(format!(
                "the scripted call to tool {name:?} cannot be served: the request declares no tool of that name"
            ))
        })
        .collect()
}

/// The provider's error for `status` with `headers` added.
fn status_fault(
    family: Family,
    status: u16,
    request_id: &str,
    headers: impl IntoIterator<Item = (&'static str, String)>,
) -> Out {
    let mut out = error_out(family, status, fault_message(status), request_id);
    if let Out::Error { headers: h, .. } = &mut out {
        h.extend(headers);
    }
    out
}

fn transport_fault(family: Family, fault: &Fault, request_id: &str) -> Out {
    match fault {
        Fault::Status {
            status,
            retry_after,
            retry_after_ms,
        } => {
            let retry = [
                retry_after.map(|s| ("retry-after", s.to_string())),
                retry_after_ms.map(|ms| ("retry-after-ms", ms.to_string())),
            ];
            status_fault(family, *status, request_id, retry.into_iter().flatten())
        }
        Fault::XShouldRetryFalse { status } => status_fault(
            family,
            *status,
            request_id,
            [("x-should-retry", "false".to_string())],
        ),
        Fault::Timeout { ms } => Out::Delay {
            ms: *ms,
            then: Box::new(error_out(family, 504, fault_message(504), request_id)),
        },
        _ => error_out(family, 500, "fake-llm: not a transport fault", request_id),
    }
}

/// Renders `turn` for `family`, records what later requests must echo, and frames it as JSON or
/// SSE (`mid`: the stream breaks off with an error).
fn render_turn(
    inner: &mut Inner,
    family: Family,
    turn: &Turn,
    body: &Value,
    step: Option<&Step>,
    mid: bool,
) -> Out {
    let ctx = Ctx {
        model: body["model"].as_str().unwrap_or("fake-model").to_string(),
        input_tokens: render::estimate_input_tokens(body),
    };
    let stream = body["stream"] == true;
    let remember = step.is_some();
    match family {
        Family::Anthropic => {
            let kind = ra::tool_kind(body);
            let msg = ra::message(turn, kind, &ctx);
            if remember {
                for b in validate::array(&msg["content"]) {
                    if b["type"] == "thinking" {
                        inner.mem.signatures.insert(
                            b["signature"].as_str().unwrap_or("").to_string(),
                            b["thinking"].as_str().unwrap_or("").to_string(),
                        );
                    }
                    if b["toolset_name"] == "computer" {
                        inner
                            .mem
                            .toolset_ids
                            .insert(b["id"].as_str().unwrap_or("").to_string());
                    }
                }
                if turn.end == End::PauseTurn {
                    inner.mem.paused = Some(msg["content"].clone());
                }
            }
            framed(msg, stream, mid, ra::events, ra::mid_stream_error_events)
        }
        Family::Responses => {
            let kind = rr::tool_kind(body);
            let (output, calls) = match rr::output(turn, kind) {
                Ok(x) => x,
                Err(e) => {
                    return error_out(family, 500, &format!("fake-llm: {e}"), "");
                }
            };
            if remember {
                for item in output.iter().filter(|i| i["type"] == "function_call") {
                    let id = item["call_id"].as_str().unwrap_or("").to_string();
                    inner.mem.responses_functions.insert(id.clone());
                    inner.mem.responses_outstanding.push(id);
                }
                for (id, checks) in calls {
                    inner.mem.responses_emitted.insert(id.clone());
                    inner.mem.responses_outstanding.push(id.clone());
                    if !checks.is_empty() {
                        inner.mem.safety_checks.insert(id, checks);
                    }
                }
            }
            let resp = rr::response(output, turn, body, &ctx);
            framed(resp, stream, mid, rr::events, rr::mid_stream_error_events)
        }
        Family::Chat => {
            let completion = rc::completion(turn, &ctx);
            let include_usage = body["stream_options"]["include_usage"] == true;
            match (stream, mid) {
                (true, false) => {
                    let mut frames: Vec<String> = rc::chunks_of(&completion, include_usage)
                        .iter()
                        .map(|c| zigral_llm::sse::frame(None, &c.to_string()))
                        .collect();
                    frames.push(zigral_llm::sse::frame(None, "[DONE]"));
                    Out::Stream {
                        frames,
                        abort: false,
                    }
                }
                (true, true) => {
                    let mut frames: Vec<String> = rc::chunks_of(&completion, false)
                        .iter()
                        .take(2)
                        .map(|c| zigral_llm::sse::frame(None, &c.to_string()))
                        .collect();
                    let err = rr::error_body(500, fault_message(500));
                    frames.push(zigral_llm::sse::frame(None, &err.to_string()));
                    Out::Stream {
                        frames,
                        abort: false,
                    }
                }
                (false, false) => Out::Json(completion),
                (false, true) => cut_json(&completion),
            }
        }
    }
}

/// Named SSE events as a family's stream shows them.
type Events = fn(&Value) -> Vec<(String, Value)>;

/// A reply with named SSE events (Anthropic, Responses) as the request asked for it: its `events`
/// when streaming, else the JSON body; `mid` (the `mid_stream_error` fault) breaks it off, as the
/// `broken` events or as half the body.
fn framed(reply: Value, stream: bool, mid: bool, events: Events, broken: Events) -> Out {
    match (stream, mid) {
        (true, false) => sse(events(&reply), false),
        (true, true) => sse(broken(&reply), false),
        (false, false) => Out::Json(reply),
        (false, true) => cut_json(&reply),
    }
}

/// SSE frames `event: <name>\ndata: <json>\n\n`.
fn sse(events: Vec<(String, Value)>, abort: bool) -> Out {
    let frames = events
        .into_iter()
        .map(|(name, data)| zigral_llm::sse::frame(Some(&name), &data.to_string()))
        .collect();
    Out::Stream { frames, abort }
}

/// A non-streaming reply cut in the middle: half the JSON, then the connection breaks.
fn cut_json(v: &Value) -> Out {
    let s = v.to_string();
    let half: String = s.chars().take(s.chars().count() / 2).collect();
    Out::Stream {
        frames: vec![half],
        abort: true,
    }
}

/// The text of a user message / input item ("" if it has none).
fn user_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| matches!(p["type"].as_str(), Some("text" | "input_text")))
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// `Summary: <n> earlier messages; last user request: <first 80 chars of the last user text>`.
fn summary_text(family: Family, body: &Value) -> String {
    let items: Vec<Value> = match family {
        Family::Anthropic => body["messages"].as_array().cloned().unwrap_or_default(),
        Family::Chat => body["messages"].as_array().cloned().unwrap_or_default(),
        Family::Responses => match &body["input"] {
            Value::Array(a) => a.clone(),
            Value::String(s) => vec![json!({"role": "user", "content": s})],
            _ => Vec::new(),
        },
    };
    let convo: Vec<&Value> = items
        .iter()
        .filter(|m| !matches!(m["role"].as_str(), Some("system" | "developer")))
        .collect();
    let last = convo
        .iter()
        .rev()
        .filter(|m| m["role"] == "user")
        .map(|m| user_text(&m["content"]))
        .find(|t| !t.trim().is_empty())
        .unwrap_or_default();
    let last: String = last.chars().take(80).collect();
    format!(
        "Summary: {} earlier messages; last user request: {last}",
        convo.len()
    )
}

async fn respond(family: Family, out: Out, request_id: &str) -> Response {
    let id_header = match family {
        Family::Anthropic => "request-id",
        Family::Responses | Family::Chat => "x-request-id",
    };
    let mut resp = match out {
        Out::Delay { ms, then } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return Box::pin(respond(family, *then, request_id)).await;
        }
        Out::Json(v) => {
            ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
        }
        Out::Error {
            status,
            body,
            headers,
        } => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = (
                code,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response();
            for (name, value) in headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    r.headers_mut().insert(name, v);
                }
            }
            r
        }
        Out::Stream { frames, abort } => {
            let content_type = if abort {
                "application/json"
            } else {
                "text/event-stream"
            };
            let items = frames
                .into_iter()
                .map(|f| Ok::<_, std::io::Error>(Bytes::from(f)));
            let head = futures_util::stream::iter(items);
            let body = if abort {
                // Let the status line and the first bytes go out, then break the body.
                let cut = futures_util::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(std::io::Error::other("fake-llm: connection cut mid-body"))
                });
                Body::from_stream(head.chain(cut))
            } else {
                Body::from_stream(head)
            };
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
                .into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert(id_header, v);
    }
    resp
}

async fn script_push(State(app): State<App>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body)
        .map_err(crate::script::ScriptError::from)
        .and_then(parse_steps);
    match parsed {
        Ok(steps) => {
            let mut g = app.lock();
            let n = steps.len();
            g.queue.extend(steps);
            axum::Json(json!({"queued": n, "remaining": g.queue.len()})).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn script_clear(State(app): State<App>) -> axum::Json<Value> {
    let mut g = app.lock();
    let n = g.queue.len();
    g.queue.clear();
    axum::Json(json!({"cleared": n}))
}

async fn requests(State(app): State<App>) -> axum::Json<Value> {
    axum::Json(Value::Array(app.lock().requests.clone()))
}

async fn requests_clear(State(app): State<App>) -> axum::Json<Value> {
    let mut g = app.lock();
    let n = g.requests.len();
    g.requests.clear();
    g.violations.clear();
    axum::Json(json!({"cleared": n}))
}

async fn violations(State(app): State<App>) -> axum::Json<Value> {
    axum::Json(Value::Array(app.lock().violations.clone()))
}

async fn stats(State(app): State<App>) -> axum::Json<Value> {
    let g = app.lock();
    axum::Json(json!({
        "requests": g.per_path,
        "faults": g.faults,
        "script_remaining": g.queue.len(),
        "exhausted": g.exhausted,
        "summaries": g.summaries,
        "rejected": g.rejected,
        "violations": g.violations.len(),
        "script_errors": g.script_errors,
    }))
}
