//! The MCP server: every native action is a tool (`left_click`, `screenshot`, `zoom`,
//! `navigate`...), plus `batch`; input schemas are generated from the native types
//! ([`Action`]'s JSON Schema, one tool per variant). Two more tools take the providers' own
//! shapes with declared-display scaling: `anthropic_computer` (a computer tool input, incl.
//! `zoom`, or a `tool_use` block, also of a toolset member) and `openai_computer` (an OpenAI
//! action, a `computer_call` item or a GA `{"actions": [...]}` batch). Served over rmcp's
//! streamable HTTP transport as a tower service that the control plane nests at `/mcp`
//! behind its API-token check.

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock, Implementation, InitializeResult,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Map, Value, json};

use crate::schema::{Action, BatchRequest, BatchResponse, Output};
use crate::{ActionError, ActionLog, Caller, Executor, anthropic, openai};

/// rmcp's model types, for hosts implementing [`HostTools`].
pub use rmcp::model;

/// The tool taking Anthropic computer-use input.
pub const ANTHROPIC_TOOL: &str = "anthropic_computer";
/// The tool taking OpenAI computer-use actions.
pub const OPENAI_TOOL: &str = "openai_computer";

/// A boxed future returning the executor for one tool call.
pub type ExecutorFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Executor, ActionError>> + Send + 'a>>;

/// Where a tool call's executor comes from. `parts` are the HTTP request's parts (headers,
/// extensions such as [`Caller`]), so a host can pick the desktop from the request and connect
/// lazily; an `Err` becomes a tool error (nothing ran). An [`Executor`] is its own source.
pub trait ExecutorSource: Send + Sync + 'static {
    fn executor<'a>(&'a self, parts: Option<&'a http::request::Parts>) -> ExecutorFuture<'a>;
}

impl ExecutorSource for Executor {
    fn executor<'a>(&'a self, _parts: Option<&'a http::request::Parts>) -> ExecutorFuture<'a> {
        Box::pin(std::future::ready(Ok(self.clone())))
    }
}

/// A boxed future of a host tool's result.
pub type HostFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = CallToolResult> + Send + 'a>>;

/// Tools the host implements itself (the control plane: `type_secret`,
/// `request_human_input`), listed after the action tools.
pub trait HostTools: Send + Sync + 'static {
    /// The tools' definitions.
    fn tools(&self) -> Vec<Tool>;
    /// Runs tool `name` if it is one of the host's; `None` otherwise.
    fn call<'a>(
        &'a self,
        name: &'a str,
        args: JsonObject,
        parts: Option<&'a http::request::Parts>,
    ) -> Option<HostFuture<'a>>;
}

/// The MCP tool handler for one session's executor.
#[derive(Clone)]
pub struct McpServer {
    exec: Arc<dyn ExecutorSource>,
    log: Option<Arc<dyn ActionLog>>,
    tools: Arc<Vec<Tool>>,
    host: Option<Arc<dyn HostTools>>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("tools", &self.tools.len())
            .finish()
    }
}

/// Options of the MCP HTTP service.
#[derive(Debug, Clone, Default)]
pub struct McpOptions {
    /// Accepted `Host` header values (DNS-rebinding protection). Empty = any host: fine when
    /// every request must carry an API token, which the control plane enforces.
    pub allowed_hosts: Vec<String>,
    /// Answer with plain JSON instead of SSE when possible.
    pub json_response: bool,
}

impl McpServer {
    /// A handler over `exec`, recording executed actions in `log` (who = the request's
    /// [`Caller`] extension, else `mcp`).
    pub fn new(exec: Executor, log: Option<Arc<dyn ActionLog>>) -> McpServer {
        McpServer::with_source(Arc::new(exec), log)
    }

    /// A handler whose executor is resolved per tool call by `source`.
    pub fn with_source(
        source: Arc<dyn ExecutorSource>,
        log: Option<Arc<dyn ActionLog>>,
    ) -> McpServer {
        McpServer {
            exec: source,
            log,
            tools: Arc::new(tools()),
            host: None,
        }
    }

    /// Adds the host's own tools.
    pub fn with_host_tools(mut self, host: Arc<dyn HostTools>) -> McpServer {
        let mut all = self.tools.as_ref().clone();
        all.extend(host.tools());
        self.tools = Arc::new(all);
        self.host = Some(host);
        self
    }
}

/// The streamable-HTTP MCP service (a tower `Service<http::Request<_>>`): nest it at `/mcp`.
pub fn service(
    exec: Executor,
    log: Option<Arc<dyn ActionLog>>,
    opts: McpOptions,
) -> StreamableHttpService<McpServer, LocalSessionManager> {
    service_with(Arc::new(exec), log, opts)
}

/// Like [`service`], with the executor resolved per tool call (see [`ExecutorSource`]).
pub fn service_with(
    source: Arc<dyn ExecutorSource>,
    log: Option<Arc<dyn ActionLog>>,
    opts: McpOptions,
) -> StreamableHttpService<McpServer, LocalSessionManager> {
    service_of(McpServer::with_source(source, log), opts)
}

/// The streamable-HTTP service around a configured [`McpServer`].
pub fn service_of(
    server: McpServer,
    opts: McpOptions,
) -> StreamableHttpService<McpServer, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(opts.allowed_hosts)
        .with_json_response(opts.json_response);
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// The tool list: one tool per native action, plus `batch`.
pub fn tools() -> Vec<Tool> {
    let root = serde_json::to_value(schemars::schema_for!(Action)).unwrap_or(Value::Null);
    let defs = root.get("$defs").cloned();
    let mut out = Vec::new();
    for variant in root["oneOf"].as_array().into_iter().flatten() {
        let Some(name) = variant["properties"]["action"]["const"]
            .as_str()
            .or_else(|| variant["properties"]["action"]["enum"][0].as_str())
        else {
            continue;
        };
        let mut schema: Map<String, Value> = variant.as_object().cloned().unwrap_or_default();
        let description = schema
            .remove("description")
            .and_then(|d| d.as_str().map(str::to_owned))
            .unwrap_or_else(|| name.replace('_', " "));
        if let Some(Value::Object(props)) = schema.get_mut("properties") {
            props.remove("action");
        }
        if let Some(Value::Array(req)) = schema.get_mut("required") {
            req.retain(|r| r != "action");
        }
        schema.insert("type".into(), json!("object"));
        schema.entry("properties").or_insert_with(|| json!({}));
        if let Some(d) = &defs
            && serde_json::to_string(&schema).is_ok_and(|s| s.contains("#/$defs/"))
        {
            schema.insert("$defs".into(), d.clone());
        }
        out.push(Tool::new(
            name.to_owned(),
            format!("{description} (screen pixels; see the screenshot tool)"),
            Arc::new(schema),
        ));
    }
    out.push(anthropic_tool());
    out.push(openai_tool());
    let batch = serde_json::to_value(schemars::schema_for!(BatchRequest)).unwrap_or(Value::Null);
    if let Value::Object(mut b) = batch {
        b.remove("$schema");
        b.remove("title");
        out.push(Tool::new(
            "batch",
            "Run several actions in order (stops at the first failure); optionally a \
             screenshot after the last one. Each action is {\"action\": \"<tool name>\", ...args}.",
            Arc::new(b),
        ));
    }
    out
}

/// A declared-display dimension property.
fn dim(what: &str) -> Value {
    json!({"type": ["integer", "null"], "minimum": 1, "maximum": 8192,
           "description": format!("declared display {what} (default: the screen's)")})
}

fn anthropic_tool() -> Tool {
    let mut schema = match serde_json::to_value(schemars::schema_for!(anthropic::ComputerInput)) {
        Ok(Value::Object(o)) => o,
        _ => Map::new(),
    };
    schema.remove("$schema");
    schema.remove("title");
    schema.remove("description");
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        props.insert("display_width_px".into(), dim("width"));
        props.insert("display_height_px".into(), dim("height"));
    }
    Tool::new(
        ANTHROPIC_TOOL,
        "Anthropic computer use: one `computer` tool input ({\"action\": \"left_click\", \
         \"coordinate\": [x, y]}, zoom with region [x0, y0, x1, y1], ...) in the declared \
         display's pixels (display_width_px/display_height_px); replies with the tool_result \
         content (text and a screenshot at the declared size; zoom: only the close-up).",
        Arc::new(schema),
    )
}

fn openai_tool() -> Tool {
    let action = serde_json::to_value(schemars::schema_for!(openai::OaAction)).unwrap_or_default();
    let mut defs = action.get("$defs").cloned().unwrap_or_else(|| json!({}));
    let mut one = action.as_object().cloned().unwrap_or_default();
    for k in ["$schema", "title", "$defs"] {
        one.remove(k);
    }
    if let Value::Object(d) = &mut defs {
        d.insert("OaAction".into(), Value::Object(one));
    }
    let schema = json!({
        "type": "object",
        "properties": {
            "actions": {"type": "array", "maxItems": crate::MAX_BATCH,
                        "items": {"$ref": "#/$defs/OaAction"},
                        "description": "run in order (the GA computer tool's batched actions)"},
            "call_id": {"type": ["string", "null"]},
            "display_width": dim("width"),
            "display_height": dim("height"),
        },
        "required": ["actions"],
        "$defs": defs,
    });
    Tool::new(
        OPENAI_TOOL,
        "OpenAI computer use: {\"actions\": [{\"type\": \"click\", \"button\": \"left\", \
         \"x\": 1, \"y\": 2}, {\"type\": \"type\", \"text\": \"hi\"}, ...]} in the declared \
         display's pixels (display_width/display_height); replies with the \
         computer_call_output and the screenshot at the declared size.",
        Arc::new(schema.as_object().cloned().unwrap_or_default()),
    )
}

/// Takes an optional declared-display dimension out of the tool arguments.
fn take_dim(obj: &mut JsonObject, key: &str) -> Result<Option<u32>, ActionError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| ActionError::BadRequest(format!("{key} must be a positive integer"))),
    }
}

fn anthropic_result(tr: &anthropic::ToolResult) -> CallToolResult {
    let content = tr
        .content
        .iter()
        .map(|c| match c["type"].as_str() {
            Some("image") => ContentBlock::image(
                c["source"]["data"].as_str().unwrap_or_default(),
                c["source"]["media_type"].as_str().unwrap_or_default(),
            ),
            _ => ContentBlock::text(c["text"].as_str().unwrap_or_default()),
        })
        .collect();
    if tr.is_error {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    }
}

fn openai_result(out: &openai::CallOutput, resp: &BatchResponse) -> CallToolResult {
    let mut head = json!({"type": out.kind, "call_id": out.call_id});
    if let Some(e) = &out.error {
        head["error"] = e.clone();
    }
    let mut content = vec![ContentBlock::text(head.to_string())];
    if let Some(img) = &resp.screenshot {
        content.push(ContentBlock::image(img.data.clone(), img.mime.clone()));
    }
    if resp.ok {
        CallToolResult::success(content)
    } else {
        CallToolResult::error(content)
    }
}

/// A parsed tool call, ready to run.
enum Job {
    Native(BatchRequest),
    Anthropic(anthropic::ComputerInput, anthropic::Options),
    OpenAi(openai::Call, openai::Options),
}

impl Job {
    async fn run(
        self,
        exec: &Executor,
    ) -> Result<(CallToolResult, BatchRequest, BatchResponse), ActionError> {
        Ok(match self {
            Job::Native(req) => {
                let resp = exec.run(&req).await?;
                (result_of(&resp), req, resp)
            }
            Job::Anthropic(input, opts) => {
                let (tr, req, resp) = anthropic::run(exec, &input, &opts).await?;
                (anthropic_result(&tr), req, resp)
            }
            Job::OpenAi(call, opts) => {
                let (out, req, resp) = openai::run(exec, &call, &opts).await?;
                (openai_result(&out, &resp), req, resp)
            }
        })
    }
}

fn result_of(resp: &BatchResponse) -> CallToolResult {
    let mut content = Vec::new();
    let mut structured = Vec::new();
    for r in &resp.results {
        match &r.output {
            Some(Output::Image(img)) => {
                content.push(ContentBlock::image(img.data.clone(), img.mime.clone()));
                structured.push(json!({"action": r.action, "ok": r.ok,
                    "duration_ms": r.duration_ms, "image": {"mime": img.mime,
                    "width": img.width, "height": img.height, "scale": img.scale}}));
            }
            _ => structured.push(serde_json::to_value(r).unwrap_or(Value::Null)),
        }
    }
    if let Some(img) = &resp.screenshot {
        content.push(ContentBlock::image(img.data.clone(), img.mime.clone()));
    }
    let text = if structured.len() == 1 {
        structured.pop().unwrap_or(Value::Null)
    } else {
        json!({"ok": resp.ok, "failed_index": resp.failed_index, "results": structured})
    };
    content.insert(0, ContentBlock::text(text.to_string()));
    if resp.ok {
        CallToolResult::success(content)
    } else {
        CallToolResult::error(content)
    }
}

fn rejected(e: &ActionError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(
        json!({"error": e.code(), "message": e.to_string()}).to_string(),
    )])
}

impl McpServer {
    async fn call(
        &self,
        name: &str,
        args: JsonObject,
        who: String,
        parts: Option<&http::request::Parts>,
    ) -> Result<CallToolResult, McpError> {
        if let Some(host) = &self.host
            && let Some(fut) = host.call(name, args.clone(), parts)
        {
            return Ok(fut.await);
        }
        let job = if name == "batch" {
            BatchRequest::from_value(Value::Object(args)).map(Job::Native)
        } else if name == ANTHROPIC_TOOL {
            let mut obj = args;
            take_dim(&mut obj, "display_width_px").and_then(|w| {
                let h = take_dim(&mut obj, "display_height_px")?;
                let body = anthropic::Body::from_value(Value::Object(obj))?;
                let opts = anthropic::Options {
                    display_width_px: w,
                    display_height_px: h,
                    ..Default::default()
                };
                Ok(Job::Anthropic(body.input, opts))
            })
        } else if name == OPENAI_TOOL {
            let mut obj = args;
            take_dim(&mut obj, "display_width").and_then(|w| {
                let h = take_dim(&mut obj, "display_height")?;
                let call = openai::Call::from_value(Value::Object(obj))?;
                let opts = openai::Options {
                    display_width: w,
                    display_height: h,
                    ..Default::default()
                };
                Ok(Job::OpenAi(call, opts))
            })
        } else {
            if !self.tools.iter().any(|t| t.name == name) {
                return Err(McpError::invalid_params(
                    format!("unknown tool {name:?}"),
                    None,
                ));
            }
            let mut obj = args;
            if obj.contains_key("action") {
                return Ok(rejected(&ActionError::BadRequest(
                    "\"action\" is implied by the tool name".into(),
                )));
            }
            obj.insert("action".into(), Value::String(name.to_owned()));
            crate::parse_action(Value::Object(obj), 0).map(|a| {
                Job::Native(BatchRequest {
                    actions: vec![a],
                    screenshot: None,
                })
            })
        };
        let job = match job {
            Ok(r) => r,
            Err(e) => return Ok(rejected(&e)),
        };
        let exec = match self.exec.executor(parts).await {
            Ok(e) => e,
            Err(e) => return Ok(rejected(&e)),
        };
        // Running and logging happen in their own task: a client that goes away mid-batch
        // does not cancel it, so every action that ran is logged.
        let log = self.log.clone();
        let parts = parts.cloned();
        let task = tokio::spawn(async move {
            let (result, req, resp) = job.run(&exec).await?;
            let logged = match &log {
                Some(log) => {
                    let entries = resp.log_entries(&req, &who, "mcp", log.typed_text());
                    log.record(parts.as_ref(), &resp, entries).await
                }
                None => Ok(()),
            };
            Ok::<_, ActionError>((result, logged))
        });
        match task.await {
            Ok(Ok((result, Ok(())))) => Ok(result),
            Ok(Ok((_, Err(e)))) => Ok(CallToolResult::error(vec![ContentBlock::text(
                json!({
                    "error": crate::ErrorCode::ActionLogFailed,
                    "message": format!("the actions ran but could not be logged: {e}"),
                })
                .to_string(),
            )])),
            Ok(Err(e)) => Ok(rejected(&e)),
            Err(e) => Err(McpError::internal_error(
                format!("the batch task failed: {e}"),
                None,
            )),
        }
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("zigral", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Drive a real Chrome on a Linux desktop. Coordinates are screen pixels of the \
                 desktop (take a screenshot first; its scale info maps image pixels to screen \
                 pixels). Browser tools (navigate, page_text, a11y_snapshot...) act on the \
                 active tab; a11y_snapshot returns clickable screen coordinates.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, McpError> {
        let parts = context.extensions.get::<http::request::Parts>();
        let who = parts
            .and_then(|p| p.extensions.get::<Caller>())
            .map(|c| c.0.clone())
            .unwrap_or_else(|| "mcp".to_owned());
        let name: Cow<'static, str> = request.name;
        let args = request.arguments.unwrap_or_default();
        self.call(&name, args, who, parts).await.map(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tool_per_action_with_generated_schemas() {
        let tools = tools();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        for n in [
            "left_click",
            "screenshot",
            "navigate",
            "key",
            "type",
            "scroll",
            "a11y_snapshot",
            "zoom",
            "batch",
            ANTHROPIC_TOOL,
            OPENAI_TOOL,
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        let click = tools
            .iter()
            .find(|t| t.name == "left_click")
            .expect("click");
        let s = Value::Object(click.input_schema.as_ref().clone());
        assert_eq!(s["type"], "object");
        assert!(s["properties"]["x"].is_object(), "{s}");
        assert!(s["properties"].get("action").is_none());
        let nav = tools.iter().find(|t| t.name == "navigate").expect("nav");
        let s = Value::Object(nav.input_schema.as_ref().clone());
        assert_eq!(s["required"], json!(["url"]));
        let shot = tools.iter().find(|t| t.name == "screenshot").expect("shot");
        let s = serde_json::to_string(shot.input_schema.as_ref()).expect("json");
        assert!(s.contains("$defs"), "{s}");
    }
}
