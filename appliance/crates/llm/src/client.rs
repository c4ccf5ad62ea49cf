//! [`Client`]: sends a [`Transcript`] to its provider over HTTPS (reqwest + rustls with the
//! ring provider and the webpki roots), streams the reply, retries like the official SDKs
//! ([`crate::retry`]), appends the assistant turn to the transcript and returns it normalised.
//!
//! Besides the computer tool it offers the [`ExtraTool`]s it was given on every request, and
//! an optional redactor rewrites each serialized request body just before it goes out (the
//! transcript keeps the original text).
//!
//! Logs carry status, request id, attempt and delay only: never the key, never contents.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Serialize;
use serde_json::Map;

use crate::anthropic::{self, ContentBlock, Message, MessagesRequest, MessagesResponse, Role};
use crate::assemble::{self, AnthropicStream, ChatStream, ResponsesStream};
use crate::chat::{self, ChatMessage, ChatRequest, ChatResponse, MessageContent};
use crate::responses::{self, Item, Response, ResponsesRequest};
use crate::sse::{Frame, Parser};
use crate::{
    ExtraTool, Family, Generation, LlmError, ProviderSpec, Reply, Transcript, Usage, retry,
};

/// Longest error body read from a failed response.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Connection setup limit inside the whole-request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const SUMMARY_PROMPT: &str = "Summarize this conversation between a user and a computer-use \
agent so that the agent can continue the task from the summary alone. Keep the user's task and \
instructions, what has been done, what was found (URLs, names, values), the current state of \
the screen, and what remains to do. Be concise; plain text.";

/// Rewrites a serialized request body before it is sent (see [`Client::with_redactor`]).
type Redactor = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A provider client for one [`ProviderSpec`].
pub struct Client {
    spec: ProviderSpec,
    http: reqwest::Client,
    url: String,
    functions: Vec<chat::ToolDef>,
    extra: Vec<ExtraTool>,
    redactor: Option<Redactor>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let extra: Vec<&str> = self.extra.iter().map(|t| t.name.as_str()).collect();
        f.debug_struct("Client")
            .field("spec", &self.spec)
            .field("url", &self.url)
            .field("extra_tools", &extra)
            .field("redactor", &self.redactor.is_some())
            .finish()
    }
}

/// A family's assembled reply body.
enum Body {
    Anthropic(MessagesResponse),
    Responses(Response),
    Chat(ChatResponse),
}

/// One failed attempt: the error, whether to retry, and the server's requested wait.
struct Failure {
    err: LlmError,
    retry: bool,
    wait: Option<f64>,
    status: Option<u16>,
    request_id: Option<String>,
}

impl From<LlmError> for Failure {
    fn from(err: LlmError) -> Failure {
        Failure {
            retry: err.retryable(),
            err,
            wait: None,
            status: None,
            request_id: None,
        }
    }
}

impl Client {
    /// A client for `spec`: checks the base URL and sets up TLS (rustls, ring, webpki roots).
    /// Also installs ring as the process's default rustls provider if none is (see
    /// [`crate::tls`]), so other reqwest clients of the process can be built afterwards.
    pub fn new(spec: ProviderSpec) -> Result<Client, LlmError> {
        crate::tls::install_default_provider();
        let base = spec.base_url.trim_end_matches('/');
        let parsed = reqwest::Url::parse(base)
            .map_err(|e| LlmError::Build(format!("base URL {base:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(LlmError::Build(format!("base URL {base:?} is not http(s)")));
        }
        let family = spec.generation.family();
        let mut url = format!("{base}{}", family.path());
        if spec.generation.beta().is_some() {
            url.push_str("?beta=true");
        }
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| LlmError::Build(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT.min(spec.timeout))
            .user_agent(concat!("zigral-llm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Build(format!("HTTP client: {e}")))?;
        Ok(Client {
            spec,
            http,
            url,
            functions: crate::functions::default_tools(),
            extra: Vec::new(),
            redactor: None,
        })
    }

    /// Replaces the function tools a Chat Completions request offers (default:
    /// [`crate::functions::default_tools`]); the control plane passes the native set
    /// (`zigral_actions::functions::tools()`). Entries that are not `{"type":"function",
    /// "function":{...}}` are an error.
    pub fn with_function_tools(
        mut self,
        tools: Vec<serde_json::Value>,
    ) -> Result<Client, LlmError> {
        self.functions = tools
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()
            .map_err(|e| LlmError::Build(format!("function tool: {e}")))?;
        crate::extra::check_all(&self.extra, &self.functions)?;
        Ok(self)
    }

    /// Replaces the tools offered besides the computer tool, on every request of every family,
    /// after it: Anthropic client tools `{name, description, input_schema}`, Responses and
    /// Chat function tools (Chat: after the function tools). Their calls come back as
    /// [`crate::Call::Function`]. Error if a name is invalid (`^[a-zA-Z0-9_-]{1,64}$`), is
    /// `computer` or a computer toolset member, is given twice or is a Chat function tool's,
    /// or if the parameters are not a JSON Schema object (`"type": "object"`).
    pub fn with_extra_tools(mut self, tools: Vec<ExtraTool>) -> Result<Client, LlmError> {
        crate::extra::check_all(&tools, &self.functions)?;
        self.extra = tools;
        Ok(self)
    }

    /// The extra tools this client offers.
    pub fn extra_tools(&self) -> &[ExtraTool] {
        &self.extra
    }

    /// Sets a function applied to the serialized JSON body of every request ([`Client::next`]
    /// and [`Client::summarize`]) just before it is sent, retries included; the transcript is
    /// not changed. The control plane passes one that replaces secret values with
    /// `<secret:name>`. It sees JSON text, so a value JSON escapes (quotes, backslashes,
    /// control characters) appears escaped; what it returns is sent as is. Never printed.
    pub fn with_redactor(mut self, f: Arc<dyn Fn(&str) -> String + Send + Sync>) -> Client {
        self.redactor = Some(f);
        self
    }

    /// The spec this client was built with.
    pub fn spec(&self) -> &ProviderSpec {
        &self.spec
    }

    /// The full request URL (`…/v1/messages?beta=true` for beta generations).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends the transcript with the generation's tools (Anthropic: cache breakpoints on the
    /// system block and the last block of the 3 most recent user turns, the beta header and
    /// `?beta=true` for beta generations; OpenAI preview: `truncation: "auto"`), streams the
    /// reply calling `on_text` with text deltas, retries like the SDKs, appends the assistant
    /// turn verbatim to `t` and returns it normalised. On error `t` is unchanged. Text deltas
    /// of an attempt that then failed were already passed to `on_text`.
    pub async fn next(
        &self,
        t: &mut Transcript,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Reply, LlmError> {
        if t.generation().family() != self.spec.generation.family() {
            return Err(LlmError::Transcript(format!(
                "a {} transcript cannot go to a {} client",
                t.generation(),
                self.spec.generation
            )));
        }
        let body = match self.spec.generation.family() {
            Family::Anthropic => to_json(&t.anthropic_request(&self.spec, &self.extra))?,
            Family::Responses => to_json(&t.responses_request(&self.spec, &self.extra))?,
            Family::Chat => to_json(&t.chat_request(&self.spec, &self.functions, &self.extra))?,
        };
        let (body, request_id, retries) = self.send(body, on_text).await?;
        let (text, calls, stop, usage) = match body {
            Body::Anthropic(m) => {
                let r = assemble::anthropic_reply(&m, &self.extra);
                t.push_anthropic(m.content);
                r
            }
            Body::Responses(r) => {
                let out = assemble::responses_reply(&r);
                t.push_responses(r.output);
                out
            }
            Body::Chat(c) => {
                let r = assemble::chat_reply(c)?;
                t.push_chat(r.content, r.tool_calls);
                (r.text, r.calls, r.stop, r.usage)
            }
        };
        Ok(Reply {
            text,
            calls,
            stop,
            usage,
            request_id,
            retries,
        })
    }

    /// One request without tools: "Summarize this conversation …" over `text`; returns the
    /// summary and its usage.
    pub async fn summarize(&self, text: &str) -> Result<(String, Usage), LlmError> {
        let prompt = format!("{SUMMARY_PROMPT}\n\n<conversation>\n{text}\n</conversation>");
        let spec = &self.spec;
        let body = match spec.generation.family() {
            Family::Anthropic => to_json(&MessagesRequest {
                model: spec.model.clone(),
                max_tokens: spec.max_tokens,
                messages: vec![Message {
                    role: Role::User,
                    content: vec![ContentBlock::text(prompt)],
                }],
                stream: spec.stream,
                ..MessagesRequest::default()
            })?,
            Family::Responses => to_json(&ResponsesRequest {
                model: spec.model.clone(),
                input: vec![Item::user_text(prompt)],
                truncation: (spec.generation == Generation::ComputerUsePreview)
                    .then(|| "auto".to_string()),
                stream: spec.stream,
                max_output_tokens: Some(spec.max_tokens),
                ..ResponsesRequest::default()
            })?,
            Family::Chat => to_json(&ChatRequest {
                model: spec.model.clone(),
                messages: vec![ChatMessage::User {
                    content: MessageContent::Text(prompt),
                }],
                stream: spec.stream,
                stream_options: spec.stream.then_some(chat::StreamOptions {
                    include_usage: true,
                }),
                max_tokens: Some(spec.max_tokens),
                extra: Map::new(),
                ..ChatRequest::default()
            })?,
        };
        let (body, _, _) = self.send(body, &mut |_| {}).await?;
        let (text, _, _, usage) = match body {
            Body::Anthropic(m) => assemble::anthropic_reply(&m, &[]),
            Body::Responses(r) => assemble::responses_reply(&r),
            Body::Chat(c) => {
                let r = assemble::chat_reply(c)?;
                (r.text, r.calls, r.stop, r.usage)
            }
        };
        Ok((text.trim().to_string(), usage))
    }

    /// Sends `body` (through the redactor, if any) with retries; returns the assembled reply,
    /// its request id and the retries.
    async fn send(
        &self,
        body: Vec<u8>,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(Body, Option<String>, u32), LlmError> {
        let body = match &self.redactor {
            Some(redact) => {
                let text = String::from_utf8(body)
                    .map_err(|e| LlmError::Build(format!("request body: {e}")))?;
                redact(&text).into_bytes()
            }
            None => body,
        };
        let mut retries = 0u32;
        loop {
            let attempt = tokio::time::timeout(self.spec.timeout, self.attempt(&body, on_text));
            let failure = match attempt.await {
                Ok(Ok((b, rid))) => return Ok((b, rid, retries)),
                Ok(Err(f)) => f,
                Err(_) => Failure::from(LlmError::Timeout),
            };
            if failure.retry && retries < self.spec.max_retries {
                let delay = retry::delay(retries, failure.wait, rand::random::<f64>());
                tracing::warn!(
                    status = failure.status,
                    request_id = failure.request_id.as_deref(),
                    attempt = retries + 1,
                    delay_ms = delay.as_millis() as u64,
                    error = failure.err.root_kind(),
                    "LLM request failed; retrying"
                );
                tokio::time::sleep(delay).await;
                retries += 1;
                continue;
            }
            tracing::warn!(
                status = failure.status,
                request_id = failure.request_id.as_deref(),
                attempts = retries + 1,
                error = failure.err.root_kind(),
                "LLM request failed"
            );
            return Err(if failure.retry && retries > 0 {
                LlmError::GaveUp {
                    attempts: retries + 1,
                    last: Box::new(failure.err),
                }
            } else {
                failure.err
            });
        }
    }

    fn headers(&self) -> Result<HeaderMap, LlmError> {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.spec.stream {
            h.insert(
                header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        let key = self.spec.api_key.as_ref().map(|k| k.expose());
        let secret = |v: String| {
            let mut v = HeaderValue::from_str(&v).map_err(|_| {
                LlmError::Build("the API key has characters a header cannot carry".into())
            })?;
            v.set_sensitive(true);
            Ok::<_, LlmError>(v)
        };
        match self.spec.generation.family() {
            Family::Anthropic => {
                h.insert(
                    "anthropic-version",
                    HeaderValue::from_static(anthropic::API_VERSION),
                );
                if let Some(beta) = self.spec.generation.beta() {
                    h.insert("anthropic-beta", HeaderValue::from_static(beta));
                }
                if let Some(k) = key {
                    h.insert("x-api-key", secret(k.to_string())?);
                }
            }
            Family::Responses | Family::Chat => {
                if let Some(k) = key {
                    h.insert(header::AUTHORIZATION, secret(format!("Bearer {k}"))?);
                }
            }
        }
        Ok(h)
    }

    /// Removes the API key from a provider-supplied message.
    fn redact(&self, s: String) -> String {
        match self.spec.api_key.as_ref().map(|k| k.expose()) {
            Some(k) if k.len() >= 4 && s.contains(k) => s.replace(k, "***"),
            _ => s,
        }
    }

    async fn attempt(
        &self,
        body: &[u8],
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(Body, Option<String>), Failure> {
        let mut resp = self
            .http
            .post(&self.url)
            .headers(self.headers()?)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| Failure::from(net_error(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let hv = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let request_id = hv("request-id").or_else(|| hv("x-request-id"));
        if !resp.status().is_success() {
            let should = retry::should_retry(status, hv("x-should-retry").as_deref());
            let wait = retry::retry_after(
                hv("retry-after-ms").as_deref(),
                hv("retry-after").as_deref(),
                SystemTime::now(),
            );
            let mut raw = Vec::new();
            while let Ok(Some(c)) = resp.chunk().await {
                raw.extend_from_slice(&c);
                if raw.len() >= MAX_ERROR_BODY {
                    break;
                }
            }
            let err = self.api_error(status, &raw, request_id.clone());
            return Err(Failure {
                err,
                retry: should,
                wait,
                status: Some(status),
                request_id,
            });
        }
        let with_ids = |err: LlmError| {
            let err = match err {
                LlmError::StreamError { kind, message } => LlmError::StreamError {
                    kind,
                    message: self.redact(message),
                },
                e => e,
            };
            Failure {
                status: Some(status),
                request_id: request_id.clone(),
                ..Failure::from(err)
            }
        };
        let family = self.spec.generation.family();
        let body = if self.spec.stream {
            let mut parser = Parser::new();
            let mut asm = Asm::new(family);
            loop {
                let chunk = resp
                    .chunk()
                    .await
                    .map_err(|e| with_ids(LlmError::Stream(error_chain(&e))))?;
                let Some(chunk) = chunk else { break };
                for f in parser.feed(&chunk) {
                    asm.frame(f, on_text).map_err(with_ids)?;
                }
            }
            if let Some(f) = parser.finish() {
                asm.frame(f, on_text).map_err(with_ids)?;
            }
            asm.finish().map_err(with_ids)?
        } else {
            let raw = resp
                .bytes()
                .await
                .map_err(|e| with_ids(LlmError::Stream(error_chain(&e))))?;
            let decode = |e: serde_json::Error| with_ids(LlmError::Decode(e.to_string()));
            match family {
                Family::Anthropic => Body::Anthropic(serde_json::from_slice(&raw).map_err(decode)?),
                Family::Responses => {
                    let r: Response = serde_json::from_slice(&raw).map_err(decode)?;
                    if r.status == "failed" {
                        return Err(with_ids(assemble::failed(&r)));
                    }
                    Body::Responses(r)
                }
                Family::Chat => {
                    let v: serde_json::Value = serde_json::from_slice(&raw)
                        .map_err(|e| with_ids(LlmError::Decode(e.to_string())))?;
                    if v.get("error").is_some() {
                        // some local servers answer errors with 200
                        let mut s = ChatStream::default();
                        let e = s.data(&v.to_string(), on_text).err().unwrap_or_else(|| {
                            LlmError::Decode("error object without details".into())
                        });
                        return Err(with_ids(e));
                    }
                    let c: ChatResponse = serde_json::from_value(v).map_err(decode)?;
                    if let Some(t) = c.choices.first().and_then(|c| c.message.content.as_deref()) {
                        on_text(t);
                    }
                    Body::Chat(c)
                }
            }
        };
        Ok((body, request_id))
    }

    fn api_error(&self, status: u16, raw: &[u8], request_id: Option<String>) -> LlmError {
        let text = String::from_utf8_lossy(raw);
        let (kind, message, body_rid) =
            if let Ok(e) = serde_json::from_slice::<anthropic::ErrorResponse>(raw) {
                (e.error.kind, e.error.message, e.request_id)
            } else if let Ok(e) = serde_json::from_slice::<responses::ErrorResponse>(raw) {
                let kind = e
                    .error
                    .code
                    .clone()
                    .filter(|c| c == "context_length_exceeded")
                    .or(e.error.kind)
                    .or(e.error.code)
                    .unwrap_or_else(|| anthropic::ErrorResponse::kind_for_status(status).into());
                (kind, e.error.message, None)
            } else {
                let msg: String = text.trim().chars().take(500).collect();
                (
                    anthropic::ErrorResponse::kind_for_status(status).into(),
                    msg,
                    None,
                )
            };
        LlmError::Api {
            status,
            kind,
            message: self.redact(message),
            request_id: request_id.or(body_rid),
        }
    }
}

/// The family's stream assembler.
enum Asm {
    Anthropic(AnthropicStream),
    Responses(ResponsesStream),
    Chat(ChatStream),
}

impl Asm {
    fn new(family: Family) -> Asm {
        match family {
            Family::Anthropic => Asm::Anthropic(AnthropicStream::default()),
            Family::Responses => Asm::Responses(ResponsesStream::default()),
            Family::Chat => Asm::Chat(ChatStream::default()),
        }
    }

    fn frame(&mut self, f: Frame, on_text: &mut (dyn FnMut(&str) + Send)) -> Result<(), LlmError> {
        match self {
            Asm::Anthropic(a) => {
                let ev = serde_json::from_str(&f.data)
                    .map_err(|e| LlmError::Decode(format!("stream event: {e}")))?;
                a.event(ev, on_text)
            }
            Asm::Responses(a) => {
                if f.is_done() {
                    return Ok(());
                }
                let ev = serde_json::from_str(&f.data)
                    .map_err(|e| LlmError::Decode(format!("stream event: {e}")))?;
                a.event(ev, on_text)
            }
            Asm::Chat(a) => a.data(&f.data, on_text),
        }
    }

    fn finish(self) -> Result<Body, LlmError> {
        Ok(match self {
            Asm::Anthropic(a) => Body::Anthropic(a.finish()?),
            Asm::Responses(a) => Body::Responses(a.finish()?),
            Asm::Chat(a) => Body::Chat(a.finish()?),
        })
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, LlmError> {
    serde_json::to_vec(v).map_err(|e| LlmError::Build(format!("request body: {e}")))
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn net_error(e: &reqwest::Error) -> LlmError {
    if e.is_timeout() {
        LlmError::Timeout
    } else if e.is_connect() {
        LlmError::Connect(error_chain(e))
    } else if e.is_builder() {
        LlmError::Build(error_chain(e))
    } else {
        LlmError::Stream(error_chain(e))
    }
}

impl LlmError {
    /// A short variant name for logs (no contents).
    fn root_kind(&self) -> &str {
        match self.root() {
            LlmError::Api { kind, .. } | LlmError::StreamError { kind, .. } => kind,
            LlmError::Timeout => "timeout",
            LlmError::Connect(_) => "connect",
            LlmError::Stream(_) => "stream",
            LlmError::Decode(_) => "decode",
            LlmError::Transcript(_) => "transcript",
            LlmError::Build(_) => "build",
            LlmError::GaveUp { .. } => "gave_up",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client(g: Generation) -> Client {
        Client::new(ProviderSpec::new(g, "m")).expect("client")
    }

    #[test]
    fn extra_tools_are_checked_against_each_other_and_the_function_tools() {
        let obj = json!({"type": "object", "properties": {}});
        let ok = client(Generation::Functions)
            .with_extra_tools(vec![
                ExtraTool::new("type_secret", "d", obj.clone()),
                ExtraTool::new("request_human_input", "d", obj.clone()),
            ])
            .expect("valid tools");
        assert_eq!(ok.extra_tools().len(), 2);
        for bad in [
            vec![ExtraTool::new("computer", "d", obj.clone())],
            vec![ExtraTool::new("left_click", "d", obj.clone())],
            vec![ExtraTool::new("", "d", obj.clone())],
            vec![ExtraTool::new("a b", "d", obj.clone())],
            vec![ExtraTool::new("t", "d", json!({"type": "array"}))],
            vec![
                ExtraTool::new("t", "d", obj.clone()),
                ExtraTool::new("t", "d", obj.clone()),
            ],
            // "drag" is a default Chat function tool
            vec![ExtraTool::new("drag", "d", obj.clone())],
        ] {
            let e = client(Generation::Functions).with_extra_tools(bad.clone());
            assert!(matches!(e, Err(LlmError::Build(_))), "{bad:?}");
        }
        // function tools given after the extra tools are checked against them too
        let f = json!({"type": "function", "function": {"name": "type_secret", "parameters": obj}});
        assert!(ok.with_function_tools(vec![f]).is_err());
    }

    #[test]
    fn debug_shows_tool_names_but_not_the_redactor() {
        let c = client(Generation::Computer)
            .with_extra_tools(vec![ExtraTool::new(
                "type_secret",
                "d",
                json!({"type": "object"}),
            )])
            .expect("tools")
            .with_redactor(Arc::new(|s: &str| {
                s.replace("hunter2-secret", "<secret:pw>")
            }));
        let d = format!("{c:?}");
        assert!(
            d.contains("type_secret") && d.contains("redactor: true"),
            "{d}"
        );
        assert!(!d.contains("hunter2"), "{d}");
    }
}
