//! The client's HTTP path against a tiny scripted HTTP/1.1 server on loopback: SDK-style
//! retries (429 + retry-after-ms, mid-stream overloaded errors), headers and URL per
//! generation, streamed replies appended to the transcript, errors in plain words.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use zigral_llm::{ApiKey, Call, Client, Generation, LlmError, ProviderSpec, Stop, Transcript, sse};

/// One recorded request: the head (lower-cased) and the JSON body.
struct Seen {
    head: String,
    body: Value,
}

async fn read_request(s: &mut TcpStream) -> Seen {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut tmp).await.expect("read");
        assert!(n > 0, "client closed before a full request");
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("length"))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut tmp).await.expect("read body");
        assert!(n > 0);
        buf.extend_from_slice(&tmp[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + len]).expect("json body");
    Seen { head, body }
}

/// Serves `responses` (raw HTTP responses), one per connection, recording each request.
async fn serve(responses: Vec<String>) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for r in responses {
            let (mut s, _) = l.accept().await.expect("accept");
            let seen = read_request(&mut s).await;
            let _ = tx.send(seen);
            s.write_all(r.as_bytes()).await.expect("write");
            s.shutdown().await.ok();
        }
    });
    (format!("http://{addr}"), rx)
}

fn json_response(status: &str, extra_headers: &str, body: &Value) -> String {
    let b = body.to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra_headers}content-length: {}\r\nconnection: close\r\n\r\n{b}",
        b.len()
    )
}

fn sse_response(request_id: &str, events: &[Value]) -> String {
    let mut s = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nrequest-id: {request_id}\r\nconnection: close\r\n\r\n"
    );
    for e in events {
        s.push_str(&sse::frame(e["type"].as_str(), &e.to_string()));
    }
    s
}

fn tool_use_stream() -> Vec<Value> {
    vec![
        json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],
            "model":"claude-test","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":20,"output_tokens":1}}}),
        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Taking "}}),
        json!({"type":"ping"}),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a look."}}),
        json!({"type":"content_block_stop","index":0}),
        json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_9","name":"computer","input":{}}}),
        json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"action\":"}}),
        json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"screenshot\"}"}}),
        json!({"type":"content_block_stop","index":1}),
        json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":17}}),
        json!({"type":"message_stop"}),
    ]
}

fn spec(base_url: String, generation: Generation) -> ProviderSpec {
    let mut spec = ProviderSpec::new(generation, "claude-test");
    spec.base_url = base_url;
    spec.api_key = Some(ApiKey::new("sk-test-key-123".into()));
    spec.timeout = std::time::Duration::from_secs(20);
    spec
}

#[tokio::test]
async fn retries_429_with_retry_after_ms_then_streams_the_reply() {
    let (base, mut rx) = serve(vec![
        json_response(
            "429 Too Many Requests",
            "retry-after-ms: 10\r\nrequest-id: req_1\r\n",
            &json!({"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}),
        ),
        sse_response("req_2", &tool_use_stream()),
    ])
    .await;
    let client = Client::new(spec(base, Generation::Computer20250124)).expect("client");
    let mut t = Transcript::new(Generation::Computer20250124, "You drive a browser.");
    t.push_user_text("open example.com");
    let mut seen = String::new();
    let reply = client
        .next(&mut t, &mut |s: &str| seen.push_str(s))
        .await
        .expect("reply");

    let mut reqs = Vec::new();
    while let Ok(r) = rx.try_recv() {
        reqs.push(r);
    }
    assert_eq!(reqs.len(), 2, "one 429, one retry");
    for r in &reqs {
        assert!(
            r.head.starts_with("post /v1/messages?beta=true http/1.1"),
            "{}",
            r.head
        );
        assert!(r.head.contains("x-api-key: sk-test-key-123"));
        assert!(r.head.contains("anthropic-version: 2023-06-01"));
        assert!(r.head.contains("anthropic-beta: computer-use-2025-01-24"));
        assert!(!r.head.contains("authorization:"));
        assert_eq!(r.body["stream"], true);
        assert_eq!(r.body["tools"][0]["type"], "computer_20250124");
        assert_eq!(r.body["system"][0]["cache_control"]["type"], "ephemeral");
    }
    assert_eq!(reqs[0].body, reqs[1].body, "the same request again");

    assert_eq!(reply.retries, 1);
    assert_eq!(reply.request_id.as_deref(), Some("req_2"));
    assert_eq!(reply.text, "Taking a look.");
    assert_eq!(seen, "Taking a look.");
    assert_eq!(reply.stop, Stop::ToolUse);
    assert_eq!(
        (reply.usage.input_tokens, reply.usage.output_tokens),
        (20, 17)
    );
    assert_eq!(reply.calls.len(), 1);
    assert_eq!(reply.calls[0].id, "toolu_9");
    assert_eq!(
        reply.calls[0].call,
        Call::Anthropic {
            input: json!({"action":"screenshot"})
        }
    );
    // the assistant turn went into the transcript verbatim
    let v = t.to_json();
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["messages"][1]["role"], "assistant");
    assert_eq!(
        v["messages"][1]["content"][1]["input"],
        json!({"action":"screenshot"})
    );
}

#[tokio::test]
async fn mid_stream_overloaded_error_retries_the_whole_request() {
    let broken = vec![
        tool_use_stream()[0].clone(),
        json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
    ];
    let (base, mut rx) = serve(vec![
        sse_response("req_a", &broken),
        sse_response("req_b", &tool_use_stream()),
    ])
    .await;
    let client = Client::new(spec(base, Generation::ComputerToolset20260801)).expect("client");
    let mut t = Transcript::new(Generation::ComputerToolset20260801, "");
    t.push_user_text("hi");
    let reply = client.next(&mut t, &mut |_: &str| {}).await.expect("reply");
    assert_eq!(reply.retries, 1);
    let first = rx.recv().await.expect("first request");
    assert!(
        first.head.starts_with("post /v1/messages http/1.1"),
        "GA: no ?beta=true"
    );
    assert!(!first.head.contains("anthropic-beta"));
    assert_eq!(t.len(), 2, "only the successful reply was appended");
}

#[tokio::test]
async fn exhausted_retries_and_non_retryable_errors_in_plain_words() {
    let overloaded = json_response(
        "529 Overloaded",
        "retry-after-ms: 1\r\n",
        &json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
    );
    let (base, mut rx) = serve(vec![overloaded.clone(), overloaded.clone(), overloaded]).await;
    let client = Client::new(spec(base, Generation::Computer20251124)).expect("client");
    let mut t = Transcript::new(Generation::Computer20251124, "");
    t.push_user_text("hi");
    let e = client
        .next(&mut t, &mut |_: &str| {})
        .await
        .expect_err("gives up");
    assert_eq!(
        e.plain(),
        "The provider is overloaded (529); gave up after 3 attempts."
    );
    assert_eq!(t.len(), 1, "transcript unchanged");
    let mut n = 0;
    while rx.recv().await.is_some() {
        n += 1;
    }
    assert_eq!(n, 3, "max_retries 2 = 3 attempts");

    // 401 is not retried, and x-should-retry: false stops a 500
    let (base, mut rx) = serve(vec![
        json_response(
            "401 Unauthorized",
            "",
            &json!({"type":"error","error":{"type":"authentication_error",
                "message":"invalid x-api-key sk-test-key-123"}}),
        ),
        json_response(
            "500 Internal Server Error",
            "x-should-retry: false\r\n",
            &json!({"type":"error","error":{"type":"api_error","message":"oops"}}),
        ),
    ])
    .await;
    let client = Client::new(spec(base, Generation::Computer20251124)).expect("client");
    let e = client
        .next(&mut t, &mut |_: &str| {})
        .await
        .expect_err("401");
    assert_eq!(e.plain(), "The API key was refused (401).");
    assert!(
        !format!("{e:?}").contains("sk-test-key-123"),
        "key redacted"
    );
    let e = client
        .next(&mut t, &mut |_: &str| {})
        .await
        .expect_err("500");
    assert!(matches!(e, LlmError::Api { status: 500, .. }), "{e:?}");
    assert_eq!(rx.recv().await.map(|_| ()), Some(()));
    assert_eq!(rx.recv().await.map(|_| ()), Some(()));
    assert!(rx.recv().await.is_none());
}

#[tokio::test]
async fn responses_and_chat_bearer_auth_and_json_bodies() {
    let (base, mut rx) = serve(vec![json_response(
        "200 OK",
        "x-request-id: req_oa\r\n",
        &json!({"id":"resp_1","status":"completed","output":[
            {"type":"computer_call","id":"cu_1","call_id":"call_1","status":"completed",
             "pending_safety_checks":[],"actions":[{"type":"click","button":"left","x":3,"y":4}]}],
            "usage":{"input_tokens":10,"output_tokens":2,"total_tokens":12}}),
    )])
    .await;
    let mut s = spec(base, Generation::Computer);
    s.stream = false;
    let client = Client::new(s).expect("client");
    let mut t = Transcript::new(Generation::Computer, "sys");
    t.push_user_text("click");
    let reply = client.next(&mut t, &mut |_: &str| {}).await.expect("reply");
    assert_eq!(reply.request_id.as_deref(), Some("req_oa"));
    assert_eq!(reply.stop, Stop::ToolUse);
    assert!(matches!(&reply.calls[0].call, Call::OpenAi { actions, .. } if actions.len() == 1));
    let r = rx.recv().await.expect("request");
    assert!(r.head.starts_with("post /v1/responses http/1.1"));
    assert!(r.head.contains("authorization: bearer sk-test-key-123"));
    assert_eq!(r.body["tools"][0], json!({"type":"computer"}));
    assert!(r.body.get("stream").is_none());

    let (base, mut rx) = serve(vec![json_response(
        "200 OK",
        "",
        &json!({"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"All done."},
            "finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}),
    )])
    .await;
    let mut s = spec(base, Generation::Functions);
    s.stream = false;
    let client = Client::new(s).expect("client");
    let (summary, usage) = client.summarize("User: hi\n").await.expect("summary");
    assert_eq!(summary, "All done.");
    assert_eq!(usage.output_tokens, 3);
    let r = rx.recv().await.expect("request");
    assert!(r.head.starts_with("post /v1/chat/completions http/1.1"));
    assert!(r.body.get("tools").is_none(), "summaries offer no tools");
    assert!(
        r.body["messages"][0]["content"]
            .as_str()
            .is_some_and(|c| c.contains("User: hi"))
    );
}
