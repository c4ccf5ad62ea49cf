//! Stream assembly tests for the three families, fed with wire-format SSE as providers send it.

use serde_json::json;

use super::*;
use crate::sse;

/// Feeds SSE bytes (split into 7-byte chunks) to `f`, frame by frame.
fn frames(stream: &str) -> Vec<sse::Frame> {
    let mut p = sse::Parser::new();
    let mut out = Vec::new();
    for c in stream.as_bytes().chunks(7) {
        out.extend(p.feed(c));
    }
    out.extend(p.finish());
    out
}

fn anthropic_sse(events: &[serde_json::Value]) -> String {
    events
        .iter()
        .map(|e| sse::frame(e["type"].as_str(), &e.to_string()))
        .collect()
}

#[test]
fn anthropic_stream_text_thinking_and_tool_json() {
    let stream = anthropic_sse(&[
        json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",
            "content":[],"model":"claude","stop_reason":null,"stop_sequence":null,
            "usage":{"input_tokens":100,"output_tokens":1,"cache_read_input_tokens":50}}}),
        json!({"type":"ping"}),
        json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me "}}),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"click."}}),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCkgIAR"}}),
        json!({"type":"content_block_stop","index":0}),
        json!({"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}),
        json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Clicking "}}),
        json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"now."}}),
        json!({"type":"content_block_stop","index":1}),
        json!({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_1","name":"left_click","input":{},"toolset_name":"computer"}}),
        json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}),
        json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"coordi"}}),
        json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"nate\": [512, 38"}}),
        json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"4]}"}}),
        json!({"type":"content_block_stop","index":2}),
        json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":42}}),
        json!({"type":"message_stop"}),
    ]);
    let mut a = AnthropicStream::default();
    let mut seen = String::new();
    let mut on_text = |t: &str| seen.push_str(t);
    for f in frames(&stream) {
        let ev = serde_json::from_str(&f.data).expect("event");
        a.event(ev, &mut on_text).expect("event ok");
    }
    let m = a.finish().expect("finish");
    assert_eq!(seen, "Clicking now.");
    assert_eq!(
        serde_json::to_value(&m.content).expect("json"),
        json!([
            {"type":"thinking","thinking":"Let me click.","signature":"EqQBCkgIAR"},
            {"type":"text","text":"Clicking now."},
            {"type":"tool_use","id":"toolu_1","name":"left_click","input":{"coordinate":[512,384]},"toolset_name":"computer"}
        ])
    );
    let (text, calls, stop, usage) = anthropic_reply(&m, &[]);
    assert_eq!(text, "Clicking now.");
    assert_eq!(stop, Stop::ToolUse);
    assert_eq!(
        (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_input_tokens
        ),
        (100, 42, 50)
    );
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "toolu_1");
    assert_eq!(
        calls[0].call,
        Call::Anthropic {
            input: json!({"action":"left_click","coordinate":[512,384]})
        }
    );
}

#[test]
fn anthropic_stream_error_event_and_truncation() {
    let mut a = AnthropicStream::default();
    let ev = serde_json::from_value(
        json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
    )
    .expect("ev");
    let e = a.event(ev, &mut |_| {}).expect_err("error event");
    assert!(matches!(&e, LlmError::StreamError { kind, .. } if kind == "overloaded_error"));
    assert!(e.retryable());
    // a stream cut before message_stop is a (retryable) stream error
    let mut a = AnthropicStream::default();
    let ev = serde_json::from_value(
        json!({"type":"message_start","message":{"id":"m","type":"message",
        "role":"assistant","content":[],"model":"c","usage":{"input_tokens":1,"output_tokens":1}}}),
    )
    .expect("ev");
    a.event(ev, &mut |_| {}).expect("ok");
    let e = a.finish().expect_err("truncated");
    assert!(matches!(e, LlmError::Stream(_)) && e.retryable());
}

#[test]
fn anthropic_calls_normalised() {
    let tu = |name: &str, input: serde_json::Value, toolset: Option<&str>| ToolUseBlock {
        id: "t".into(),
        name: name.into(),
        input,
        toolset_name: toolset.map(str::to_string),
        cache_control: None,
        extra: Map::new(),
    };
    let call = |b: &ToolUseBlock| anthropic_call(b, &[]);
    assert_eq!(
        call(&tu(
            "computer",
            json!({"action":"key","text":"ctrl+l"}),
            None
        )),
        Call::Anthropic {
            input: json!({"action":"key","text":"ctrl+l"})
        }
    );
    assert_eq!(
        call(&tu("screenshot", json!({}), Some("computer"))),
        Call::Anthropic {
            input: json!({"action":"screenshot"})
        }
    );
    assert!(matches!(
        call(&tu("computer", json!("{\"action\": \"left_cl"), None)),
        Call::Malformed { raw, .. } if raw == "{\"action\": \"left_cl"
    ));
    assert!(matches!(
        call(&tu("computer", json!({"coordinate":[1,2]}), None)),
        Call::Malformed { .. }
    ));
    assert!(matches!(
        call(&tu("bash", json!({"command":"ls"}), None)),
        Call::Malformed { .. }
    ));
    // an extra tool's tool_use is a function call with the input as arguments
    let extra = [ExtraTool::new(
        "type_secret",
        "d",
        json!({"type": "object"}),
    )];
    let args = json!({"name": "site", "field": "password"});
    assert_eq!(
        anthropic_call(&tu("type_secret", args.clone(), None), &extra),
        Call::Function {
            name: "type_secret".into(),
            arguments: args.clone()
        }
    );
    // unknown without it; a computer toolset member whatever its name; malformed with a
    // non-object input
    assert!(matches!(
        call(&tu("type_secret", args.clone(), None)),
        Call::Malformed { error, .. } if error == "unknown tool"
    ));
    assert!(matches!(
        anthropic_call(&tu("type_secret", args, Some("computer")), &extra),
        Call::Anthropic { .. }
    ));
    assert!(matches!(
        anthropic_call(&tu("type_secret", json!("{\"name"), None), &extra),
        Call::Malformed { .. }
    ));
    // stop reasons
    let m = |stop: &str| MessagesResponse {
        id: "m".into(),
        kind: "message".into(),
        role: anthropic::Role::Assistant,
        content: vec![],
        model: "c".into(),
        stop_reason: Some(stop.into()),
        stop_sequence: None,
        usage: Default::default(),
        extra: Map::new(),
    };
    assert_eq!(anthropic_reply(&m("pause_turn"), &[]).2, Stop::PauseTurn);
    assert_eq!(anthropic_reply(&m("max_tokens"), &[]).2, Stop::MaxTokens);
    assert_eq!(anthropic_reply(&m("refusal"), &[]).2, Stop::Refusal(None));
    assert_eq!(
        anthropic_reply(&m("model_context_window_exceeded"), &[]).2,
        Stop::ContextExceeded
    );
    assert_eq!(anthropic_reply(&m("end_turn"), &[]).2, Stop::EndTurn);
}

#[test]
fn responses_stream_items_done_and_completed() {
    let events = [
        json!({"type":"response.created","response":{"id":"r","status":"in_progress","output":[]}}),
        json!({"type":"response.output_item.added","output_index":0,"item":{"type":"message","id":"m","role":"assistant","status":"in_progress","content":[]}}),
        json!({"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"Look"}),
        json!({"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"ing."}),
        json!({"type":"response.output_item.done","output_index":0,"item":{"type":"message","id":"m","role":"assistant","status":"completed","content":[{"type":"output_text","text":"Looking.","annotations":[]}]}}),
        json!({"type":"response.output_item.done","output_index":1,"item":{"type":"computer_call","id":"cu","call_id":"call_1","status":"completed",
            "pending_safety_checks":[{"id":"cs","code":"irrelevant_domain","message":"m"}],
            "actions":[{"type":"click","button":"left","x":1,"y":2},{"type":"type","text":"hi"}]}}),
        json!({"type":"response.completed","response":{"id":"r","status":"completed","output":[],
            "usage":{"input_tokens":100,"output_tokens":9,"total_tokens":109,"input_tokens_details":{"cached_tokens":60}}}}),
    ];
    let stream: String = events
        .iter()
        .map(|e| sse::frame(e["type"].as_str(), &e.to_string()))
        .collect();
    let mut a = ResponsesStream::default();
    let mut seen = String::new();
    let mut on_text = |t: &str| seen.push_str(t);
    for f in frames(&stream) {
        a.event(serde_json::from_str(&f.data).expect("ev"), &mut on_text)
            .expect("ok");
    }
    let r = a.finish().expect("finish");
    assert_eq!(seen, "Looking.");
    assert_eq!(r.output.len(), 2);
    let (text, calls, stop, usage) = responses_reply(&r);
    assert_eq!(text, "Looking.");
    assert_eq!(stop, Stop::ToolUse);
    assert_eq!(
        (usage.input_tokens, usage.cache_read_input_tokens),
        (40, 60)
    );
    let Call::OpenAi {
        actions,
        pending_safety_checks,
    } = &calls[0].call
    else {
        panic!("{calls:?}")
    };
    assert_eq!(calls[0].id, "call_1");
    assert_eq!(actions.len(), 2);
    assert_eq!(
        pending_safety_checks[0].code.as_deref(),
        Some("irrelevant_domain")
    );
}

#[test]
fn responses_preview_action_failed_and_incomplete() {
    let r: Response = serde_json::from_value(json!({"id":"r","status":"completed","output":[
        {"type":"computer_call","id":"cu","call_id":"c","status":"completed","pending_safety_checks":[],
         "action":{"type":"screenshot"}},
        {"type":"function_call","call_id":"f","name":"navigate","arguments":"{\"url\":\"https://x\"}"}]}))
    .expect("r");
    let (_, calls, _, _) = responses_reply(&r);
    assert_eq!(
        calls[0].call,
        Call::OpenAi {
            actions: vec![json!({"type":"screenshot"})],
            pending_safety_checks: vec![]
        }
    );
    assert_eq!(
        calls[1].call,
        Call::Function {
            name: "navigate".into(),
            arguments: json!({"url":"https://x"})
        }
    );
    let r: Response = serde_json::from_value(json!({"id":"r","status":"incomplete","output":[],
        "incomplete_details":{"reason":"max_output_tokens"}}))
    .expect("r");
    assert_eq!(responses_reply(&r).2, Stop::MaxTokens);
    let mut a = ResponsesStream::default();
    let ev = serde_json::from_value(
        json!({"type":"response.failed","response":{"id":"r","status":"failed",
        "output":[],"error":{"code":"server_error","message":"boom"}}}),
    )
    .expect("ev");
    let e = a.event(ev, &mut |_| {}).expect_err("failed");
    assert!(
        matches!(&e, LlmError::StreamError { kind, message } if kind == "server_error" && message == "boom")
    );
    assert!(e.retryable());
}

#[test]
fn chat_stream_tool_call_fragments_by_index() {
    let chunks = [
        json!({"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":"Sure"},"finish_reason":null}]}),
        json!({"id":"c1","choices":[{"index":0,"delta":{"content":"."},"finish_reason":null}]}),
        json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"left_click","arguments":""}}]},"finish_reason":null}]}),
        json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"type","arguments":"{\"te"}}]},"finish_reason":null}]}),
        json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\": 1, "}}]},"finish_reason":null}]}),
        json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"xt\": \"hi\"}"}}]},"finish_reason":null}]}),
        json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"y\": 2}"}}]},"finish_reason":null}]}),
        json!({"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
        json!({"id":"c1","choices":[],"usage":{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42}}),
    ];
    let mut stream: String = chunks
        .iter()
        .map(|c| sse::frame(None, &c.to_string()))
        .collect();
    stream.push_str(&sse::frame(None, "[DONE]"));
    let mut a = ChatStream::default();
    let mut seen = String::new();
    let mut on_text = |t: &str| seen.push_str(t);
    for f in frames(&stream) {
        a.data(&f.data, &mut on_text).expect("ok");
    }
    let r = a.finish().expect("finish");
    assert_eq!(seen, "Sure.");
    let ChatReply {
        content,
        tool_calls,
        text,
        calls,
        stop,
        usage,
    } = chat_reply(r).expect("reply");
    assert_eq!(content.as_deref(), Some("Sure."));
    assert_eq!(text, "Sure.");
    assert_eq!(tool_calls.len(), 2);
    assert_eq!(tool_calls[0].function.arguments, "{\"x\": 1, \"y\": 2}");
    assert_eq!(stop, Stop::ToolUse);
    assert_eq!((usage.input_tokens, usage.output_tokens), (30, 12));
    assert_eq!(
        calls[0].call,
        Call::Function {
            name: "left_click".into(),
            arguments: json!({"x":1,"y":2})
        }
    );
    assert_eq!(
        calls[1].call,
        Call::Function {
            name: "type".into(),
            arguments: json!({"text":"hi"})
        }
    );
}

#[test]
fn chat_malformed_arguments_missing_ids_and_errors() {
    assert!(
        matches!(function_call("left_click", "{\"x\": 1,"), Call::Malformed { error, .. } if error.contains("not valid JSON"))
    );
    assert!(matches!(
        function_call("left_click", "[1,2]"),
        Call::Malformed { .. }
    ));
    assert_eq!(
        function_call("screenshot", ""),
        Call::Function {
            name: "screenshot".into(),
            arguments: json!({})
        }
    );
    assert_eq!(
        function_call("key", "\"{\\\"keys\\\":\\\"Return\\\"}\""),
        Call::Function {
            name: "key".into(),
            arguments: json!({"keys":"Return"})
        }
    );
    let r: ChatResponse = serde_json::from_value(json!({"id":"x","choices":[{"index":0,"message":{
        "role":"assistant","content":null,"tool_calls":[{"id":"","type":"function",
        "function":{"name":"screenshot","arguments":"{}"}}]},"finish_reason":"stop"}]}))
    .expect("r");
    let ChatReply {
        tool_calls,
        calls,
        stop,
        ..
    } = chat_reply(r).expect("reply");
    assert_eq!(tool_calls[0].id, "call_0");
    assert_eq!(calls[0].id, "call_0");
    assert_eq!(stop, Stop::ToolUse);
    let mut a = ChatStream::default();
    let e = a
        .data(
            r#"{"error":{"message":"model not loaded","type":"server_error"}}"#,
            &mut |_| {},
        )
        .expect_err("error chunk");
    assert!(matches!(e, LlmError::StreamError { .. }));
    assert!(matches!(
        ChatStream::default().finish(),
        Err(LlmError::Stream(_))
    ));
}
