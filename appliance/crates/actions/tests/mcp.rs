//! MCP over streamable HTTP with a real client that is not ours: the official Python `mcp`
//! SDK lists the tools, takes a screenshot and clicks a button on a real Chrome page, and
//! calls the current-generation tools (native `zoom`, `anthropic_computer` with a toolset
//! member block, `openai_computer` with a GA batch).
//!
//! Needs the SDK in the test virtualenv made by `scripts/setup-python.sh` (`<repo>/.venv`,
//! pinned in tests/requirements.txt), or `ZIGRAL_MCP_PYTHON` pointing at a python that has it.

mod common;

use std::sync::{Arc, Mutex};

use serde_json::Value;
use zigral_actions::{ActionLog, LogEntry, mcp};

#[derive(Default)]
struct MemLog(Mutex<Vec<LogEntry>>);

impl ActionLog for MemLog {
    fn record<'a>(
        &'a self,
        _parts: Option<&'a http::request::Parts>,
        _batch: &'a zigral_actions::BatchResponse,
        entries: Vec<LogEntry>,
    ) -> zigral_actions::LogFuture<'a> {
        Box::pin(async move {
            if let Ok(mut v) = self.0.lock() {
                v.extend(entries);
            }
            Ok(())
        })
    }
}

/// The python interpreter with the `mcp` SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mcp_sdk_lists_tools_screenshots_and_clicks() {
    let e = common::env();
    e.open_ui().await;
    let (x, y) = e.center("b1").await;
    let log = Arc::new(MemLog::default());
    let svc = mcp::service(
        e.exec.clone(),
        Some(log.clone() as Arc<dyn ActionLog>),
        mcp::McpOptions::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", svc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client.py");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let v = tokio::task::spawn_blocking(move || {
        zigral_tests::run_mcp_client(&script, &[url, x.to_string(), y.to_string()])
    })
    .await
    .expect("join");
    let tools: Vec<&str> = v["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in [
        "screenshot",
        "left_click",
        "navigate",
        "type",
        "key",
        "batch",
    ] {
        assert!(tools.contains(&t), "{t} not in {tools:?}");
    }
    let x_schema = &v["left_click_schema"]["properties"]["x"];
    assert!(x_schema.is_object() && !x_schema.is_null(), "{v}");
    assert_eq!(v["screenshot_is_error"], false, "{v}");
    assert_eq!(v["screenshot_images"], 1);
    assert_eq!(v["screenshot_mime"], "image/png");
    assert_eq!(v["screenshot_size"], serde_json::json!([1024, 768]));
    assert_eq!(v["click_is_error"], false, "{v}");
    assert_eq!(v["bad_is_error"], true, "{v}");
    assert!(
        v["bad_text"][0]
            .as_str()
            .unwrap_or("")
            .contains("out_of_bounds"),
        "{v}"
    );
    // The click reached the page.
    assert_eq!(e.wait_events("click", "b1", 1).await.len(), 1);
    // Both executed actions were logged (the rejected one ran nothing).
    let entries = log.0.lock().expect("log").clone();
    let names: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(names, vec!["screenshot", "left_click"], "{entries:?}");
    assert!(
        entries
            .iter()
            .all(|e| e.via == "mcp" && e.who == "mcp" && e.ok)
    );
}

/// Serves `exec` over MCP on a free port; returns the endpoint URL.
async fn serve(e: &common::Env, log: Arc<MemLog>) -> String {
    let svc = mcp::service(
        e.exec.clone(),
        Some(log as Arc<dyn ActionLog>),
        mcp::McpOptions::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", svc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://127.0.0.1:{port}/mcp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mcp_sdk_calls_zoom_and_the_provider_tools() {
    let e = common::env();
    e.open_ui().await;
    let (x, y) = e.center("b1").await;
    let d = |v: i32| ((f64::from(v) * 0.8).round() as i64).to_string();
    let log = Arc::new(MemLog::default());
    let url = serve(&e, log.clone()).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_adapters.py");
    let (dx, dy) = (d(x), d(y));
    let v =
        tokio::task::spawn_blocking(move || zigral_tests::run_mcp_client(&script, &[url, dx, dy]))
            .await
            .expect("join");
    for t in ["zoom", mcp::ANTHROPIC_TOOL, mcp::OPENAI_TOOL] {
        assert!(
            v["tools"]
                .as_array()
                .expect("tools")
                .contains(&Value::from(t)),
            "{t} not listed: {v}"
        );
    }
    // Native zoom: screen pixels, the region scaled to fit the screen (aspect kept).
    assert_eq!(v["zoom"]["is_error"], false, "{v}");
    assert_eq!(v["zoom"]["images"], serde_json::json!([[1280, 800]]), "{v}");
    // The Anthropic single tool: a click plus the screenshot at the declared size.
    assert_eq!(v["single"]["is_error"], false, "{v}");
    assert_eq!(
        v["single"]["images"],
        serde_json::json!([[1024, 640]]),
        "{v}"
    );
    // A toolset member's zoom: only the close-up, at the declared size.
    assert_eq!(v["member"]["is_error"], false, "{v}");
    assert_eq!(
        v["member"]["images"],
        serde_json::json!([[1024, 640]]),
        "{v}"
    );
    assert!(
        v["member"]["texts"].as_array().expect("texts").is_empty(),
        "{v}"
    );
    // The OpenAI GA batch: the computer_call_output head and the screenshot.
    assert_eq!(v["openai"]["is_error"], false, "{v}");
    assert_eq!(
        v["openai"]["images"],
        serde_json::json!([[1024, 640]]),
        "{v}"
    );
    let head: Value =
        serde_json::from_str(v["openai"]["texts"][0].as_str().expect("head")).expect("json");
    assert_eq!(head["call_id"], "call_1", "{head}");
    assert_eq!(v["bad"]["is_error"], true, "{v}");
    assert!(
        v["bad"]["texts"][0]
            .as_str()
            .unwrap_or("")
            .contains("unknown_action"),
        "{v}"
    );
    // Both clicks reached the button, and everything that ran was logged.
    assert_eq!(e.wait_events("click", "b1", 2).await.len(), 2);
    let names: Vec<String> = log
        .0
        .lock()
        .expect("log")
        .iter()
        .map(|e| e.action.clone())
        .collect();
    assert_eq!(
        names,
        ["zoom", "left_click", "zoom", "mouse_move", "click"],
        "{names:?}"
    );
}
