//! The zigral-llm client against the fake, for every tool generation: a scripted tool call
//! turn, the results with a screenshot, a text turn, with a retried 429 in between; the fake
//! must record no violation (client and fake agree on the wire format).

use serde_json::json;
use zigral_fake_llm::LocalFake;
use zigral_llm::{Client, Generation, Image, ProviderSpec, Stop, ToolOutcome, Transcript};

/// A real 1×1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

async fn run(generation: Generation, stream: bool) {
    let fake = LocalFake::start(zigral_fake_llm::Config::default())
        .await
        .expect("start the fake");
    fake.script(json!([
        {"calls": [{"action": "left_click", "coordinate": [100, 200]}, {"action": "type", "text": "hello"}],
         "thinking": true},
        {"fault": "status", "status": 429, "retry_after_ms": 10},
        {"text": "Done."},
    ]))
    .await
    .expect("script");

    let mut spec = ProviderSpec::new(generation, "fake-model");
    spec.base_url = fake.base_url().to_string();
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

    let violations = fake.get("/_violations").await.expect("violations");
    assert_eq!(violations, json!([]), "{generation}");
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
