//! The zigral-llm client against the fake, for every tool generation: a scripted tool call
//! turn, the results with a screenshot, a text turn, with a retried 429 in between; the fake
//! must record no violation (client and fake agree on the wire format).

use serde_json::{Value, json};
use zigral_llm::{Client, Generation, Image, ProviderSpec, Stop, ToolOutcome, Transcript};

/// A real 1×1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

async fn run(generation: Generation, stream: bool) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(zigral_fake_llm::serve(
        listener,
        zigral_fake_llm::Config::default(),
    ));
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/_script"))
        .json(&json!({"steps": [
            {"calls": [{"action": "left_click", "coordinate": [100, 200]}, {"action": "type", "text": "hello"}],
             "thinking": true},
            {"fault": "status", "status": 429, "retry_after_ms": 10},
            {"text": "Done."},
        ]}))
        .send()
        .await
        .expect("script");
    assert_eq!(r.status(), 200);

    let mut spec = ProviderSpec::new(generation, "fake-model");
    spec.base_url = base.clone();
    spec.api_key = Some(zigral_llm::ApiKey::new("test-key".into()));
    spec.stream = stream;
    let client = Client::new(spec).expect("client");
    let mut t = Transcript::new(generation, "You drive a desktop.");
    t.push_user_text("type hello in the box");
    let reply = client.next(&mut t, &mut |_| {}).await.expect("first turn");
    assert_eq!(reply.stop, Stop::ToolUse, "{generation}");
    assert!(!reply.calls.is_empty(), "{generation}");
    let outcomes = reply
        .calls
        .iter()
        .map(|c| ToolOutcome {
            call_id: c.id.clone(),
            text: Some("ok".into()),
            image: Some(Image {
                media_type: "image/png".into(),
                base64: PNG.into(),
            }),
            ..ToolOutcome::default()
        })
        .collect();
    t.push_results(outcomes).expect("results");
    let reply = client.next(&mut t, &mut |_| {}).await.expect("second turn");
    assert_eq!(reply.text, "Done.", "{generation}");
    assert_eq!(reply.stop, Stop::EndTurn, "{generation}");
    assert_eq!(reply.retries, 1, "the 429 was retried ({generation})");

    // A summarization request (no tools) is answered without consuming the script.
    let (summary, _) = client.summarize("user: hi").await.expect("summary");
    assert!(
        summary.starts_with("Summary: 1 earlier messages; last user request: "),
        "{generation}: {summary}"
    );

    let violations: Value = http
        .get(format!("{base}/_violations"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(violations, json!([]), "{generation}");
    server.abort();
}

#[tokio::test]
async fn computer_20250124() {
    run(Generation::Computer20250124, true).await;
}

#[tokio::test]
async fn computer_20251124_json() {
    run(Generation::Computer20251124, false).await;
}

#[tokio::test]
async fn computer_toolset_20260801() {
    run(Generation::ComputerToolset20260801, true).await;
}

#[tokio::test]
async fn computer_use_preview() {
    run(Generation::ComputerUsePreview, true).await;
}

#[tokio::test]
async fn responses_computer_ga_json() {
    run(Generation::Computer, false).await;
}

#[tokio::test]
async fn chat_functions() {
    run(Generation::Functions, true).await;
}
