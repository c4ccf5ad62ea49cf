//! Transcript tests: requests (cache breakpoints, tools, beta-free toolset), results on the wire
//! for each family, image pruning in chunks, compaction keeping tool pairs valid.

use serde_json::{Value, json};

use super::*;
use crate::{Image, SafetyCheck};

fn img() -> Image {
    Image {
        media_type: "image/png".into(),
        base64: "iVBORw0KGgo".into(),
    }
}

fn tool_use(id: &str) -> ContentBlock {
    ContentBlock::ToolUse(anthropic::ToolUseBlock {
        id: id.into(),
        name: "computer".into(),
        input: json!({"action": "screenshot"}),
        toolset_name: None,
        cache_control: None,
        extra: Map::new(),
    })
}

fn outcome(id: &str, text: Option<&str>, image: bool) -> ToolOutcome {
    ToolOutcome {
        call_id: id.into(),
        text: text.map(str::to_string),
        image: image.then(img),
        ..ToolOutcome::default()
    }
}

/// user text, then `n` rounds of assistant tool_use + user tool_result (with a screenshot).
fn anthropic_rounds(n: usize) -> Transcript {
    let mut t = Transcript::new(Generation::Computer20251124, "sys");
    t.push_user_text("open example.com");
    for i in 0..n {
        t.push_anthropic(vec![ContentBlock::text("ok"), tool_use(&format!("t{i}"))]);
        t.push_results(vec![outcome(&format!("t{i}"), Some("done"), true)])
            .expect("results");
    }
    t
}

fn cache_marks(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (i, m) in v["messages"].as_array().into_iter().flatten().enumerate() {
        for (j, b) in m["content"].as_array().into_iter().flatten().enumerate() {
            if b.get("cache_control").is_some() {
                out.push(format!("{i}.{j}"));
            }
        }
    }
    out
}

#[test]
fn cache_breakpoints_on_system_and_last_block_of_three_latest_user_turns() {
    let mut t = anthropic_rounds(4);
    t.push_anthropic(vec![ContentBlock::text("what next?")]);
    t.push_user_text("go on");
    t.push_user_text("and hurry");
    let spec = ProviderSpec::new(Generation::Computer20251124, "claude");
    let v = serde_json::to_value(t.anthropic_request(&spec, &[])).expect("json");
    assert_eq!(
        v["system"][0]["cache_control"],
        json!({"type": "ephemeral"})
    );
    // messages: 0 user, 1 a, 2 u, 3 a, 4 u, 5 a, 6 u, 7 a, 8 u, 9 a(text), 10 u(2 blocks)
    assert_eq!(cache_marks(&v), vec!["6.0", "8.0", "10.1"]);
    let total = v.to_string().matches("\"cache_control\"").count();
    assert_eq!(total, 4, "at most 4 breakpoints");
    // the transcript itself carries no breakpoints, and stale ones are cleared
    assert!(!t.to_json().to_string().contains("cache_control"));
    let mut msgs = vec![
        Message {
            role: Role::User,
            content: vec![ContentBlock::text("a"), ContentBlock::text("b")],
        };
        5
    ];
    msgs[0].content[1].set_cache_control(Some(CacheControl::ephemeral()));
    place_cache_breakpoints(&mut msgs);
    let v = json!({"messages": msgs});
    assert_eq!(cache_marks(&v), vec!["2.1", "3.1", "4.1"]);
}

#[test]
fn anthropic_request_tools_and_thinking_per_generation() {
    let t = Transcript::new(Generation::ComputerToolset20260801, "");
    let mut spec = ProviderSpec::new(Generation::ComputerToolset20260801, "claude");
    spec.thinking = Some(Thinking::Adaptive {
        effort: Some("high".into()),
    });
    let v = serde_json::to_value(t.anthropic_request(&spec, &[])).expect("json");
    assert_eq!(v["tools"][0]["type"], "computer_toolset_20260801");
    assert!(v.get("system").is_none());
    assert_eq!(v["thinking"], json!({"type": "adaptive"}));
    assert_eq!(v["output_config"], json!({"effort": "high"}));
    let mut spec = ProviderSpec::new(Generation::Computer20250124, "claude");
    spec.display = (1280, 800);
    spec.thinking = Some(Thinking::Budget(2048));
    let v = serde_json::to_value(t.anthropic_request(&spec, &[])).expect("json");
    assert_eq!(
        v["tools"][0],
        json!({"type":"computer_20250124","name":"computer","display_width_px":1280,"display_height_px":800})
    );
    assert_eq!(
        v["thinking"],
        json!({"type":"enabled","budget_tokens":2048})
    );
}

#[test]
fn anthropic_results_one_user_message_in_call_order_with_toolset_name() {
    let mut t = Transcript::new(Generation::ComputerToolset20260801, "");
    t.push_user_text("go");
    let member = |id: &str| {
        ContentBlock::ToolUse(anthropic::ToolUseBlock {
            id: id.into(),
            name: "left_click".into(),
            input: json!({"coordinate": [1, 2]}),
            toolset_name: Some("computer".into()),
            cache_control: None,
            extra: Map::new(),
        })
    };
    t.push_anthropic(vec![member("a"), member("b")]);
    // wrong ids, duplicates and missing results change nothing
    let before = t.to_json();
    let e = t.push_results(vec![outcome("zzz", None, false)]);
    assert!(matches!(e, Err(LlmError::Transcript(_))));
    let e = t.push_results(vec![outcome("a", None, false)]);
    assert!(matches!(e, Err(LlmError::Transcript(m)) if m.contains("\"b\"")));
    let e = t.push_results(vec![outcome("a", None, false), outcome("a", None, false)]);
    assert!(e.is_err());
    assert_eq!(t.to_json(), before);
    let err = ToolOutcome::error("b", "off screen");
    t.push_results(vec![err, outcome("a", None, true)])
        .expect("results");
    let v = t.to_json();
    let last = &v["messages"][2];
    assert_eq!(last["role"], "user");
    assert_eq!(last["content"].as_array().map(Vec::len), Some(2));
    assert_eq!(last["content"][0]["tool_use_id"], "a");
    assert_eq!(last["content"][0]["toolset_name"], "computer");
    assert_eq!(last["content"][0]["content"][0]["type"], "image");
    assert_eq!(last["content"][1]["tool_use_id"], "b");
    assert_eq!(last["content"][1]["is_error"], true);
    assert_eq!(last["content"][1]["content"][0]["text"], "off screen");
    // nothing left to answer
    assert!(t.push_results(vec![]).is_err());
}

fn computer_call(call_id: &str) -> Item {
    serde_json::from_value(json!({"type":"computer_call","id":format!("cu_{call_id}"),
        "call_id":call_id,"status":"completed","pending_safety_checks":[],
        "actions":[{"type":"screenshot"}]}))
    .expect("item")
}

#[test]
fn responses_results_screenshot_output_then_user_text() {
    let mut t = Transcript::new(Generation::ComputerUsePreview, "sys");
    t.push_user_text("go");
    let reasoning: Item =
        serde_json::from_value(json!({"type":"reasoning","id":"rs_1","summary":[]})).expect("r");
    t.push_responses(vec![reasoning, computer_call("c1")]);
    // a computer_call needs a screenshot
    assert!(
        t.push_results(vec![outcome("c1", Some("x"), false)])
            .is_err()
    );
    let mut o = outcome("c1", Some("clicked"), true);
    o.acknowledged = vec![SafetyCheck {
        id: "cs_1".into(),
        code: Some("malicious_instructions".into()),
        message: None,
    }];
    o.current_url = Some("https://example.com/".into());
    t.push_results(vec![o]).expect("results");
    let spec = ProviderSpec::new(Generation::ComputerUsePreview, "computer-use-preview");
    let v = serde_json::to_value(t.responses_request(&spec, &[])).expect("json");
    assert_eq!(v["truncation"], "auto");
    assert_eq!(v["instructions"], "sys");
    assert_eq!(
        v["tools"][0],
        json!({"type":"computer_use_preview","display_width":1024,"display_height":768,"environment":"browser"})
    );
    assert!(v.get("previous_response_id").is_none());
    let input = v["input"].as_array().expect("input");
    assert_eq!(input.len(), 5);
    assert_eq!(input[1]["type"], "reasoning");
    assert_eq!(input[3]["type"], "computer_call_output");
    assert_eq!(input[3]["output"]["type"], "computer_screenshot");
    assert_eq!(
        input[3]["output"]["image_url"],
        "data:image/png;base64,iVBORw0KGgo"
    );
    assert_eq!(input[3]["acknowledged_safety_checks"][0]["id"], "cs_1");
    assert_eq!(input[3]["current_url"], "https://example.com/");
    assert_eq!(input[4]["role"], "user");
    assert_eq!(input[4]["content"][0]["text"], "clicked");
    let ga = ProviderSpec::new(Generation::Computer, "gpt-5.4");
    let v = serde_json::to_value(t.responses_request(&ga, &[])).expect("json");
    assert_eq!(v["tools"][0], json!({"type":"computer"}));
    assert!(v.get("truncation").is_none());
}

#[test]
fn chat_results_tool_messages_then_one_user_message_with_images() {
    let mut t = Transcript::new(Generation::Functions, "sys");
    t.push_user_text("go");
    let call = |id: &str| chat::ToolCall {
        id: id.into(),
        kind: "function".into(),
        function: chat::FunctionCall {
            name: "left_click".into(),
            arguments: "{\"x\":1,\"y\":2}".into(),
        },
    };
    t.push_chat(None, vec![call("x1"), call("x2")]);
    t.push_results(vec![
        outcome("x2", None, true),
        outcome("x1", Some("ok"), true),
    ])
    .expect("results");
    let spec = ProviderSpec::new(Generation::Functions, "qwen");
    let v = serde_json::to_value(t.chat_request(&spec, &crate::functions::default_tools(), &[]))
        .expect("json");
    let m = v["messages"].as_array().expect("messages");
    assert_eq!(m[0], json!({"role":"system","content":"sys"}));
    assert_eq!(m[2]["role"], "assistant");
    assert!(m[2].get("content").is_none());
    assert_eq!(
        m[3],
        json!({"role":"tool","tool_call_id":"x1","content":"ok"})
    );
    assert_eq!(m[4]["role"], "tool");
    assert_eq!(m[4]["tool_call_id"], "x2");
    assert_eq!(m[5]["role"], "user");
    let parts = m[5]["content"].as_array().expect("parts");
    assert_eq!(parts.len(), 3);
    assert_eq!(
        parts[1]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgo"
    );
    assert_eq!(m.len(), 6);
    assert_eq!(v["tool_choice"], "auto");
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
    assert_eq!(v["tools"][0]["type"], "function");
}

#[test]
fn prune_images_in_chunks() {
    let mut t = anthropic_rounds(7);
    assert_eq!(t.image_count(), 7);
    // 7 - 3 = 4 over, removed in multiples of 3 → 3 removed, 4 remain
    assert_eq!(t.prune_images(3, 3), 3);
    assert_eq!(t.image_count(), 4);
    let v = t.to_json();
    let first = &v["messages"][2]["content"][0]["content"];
    assert_eq!(first[1], json!({"type":"text","text":SCREENSHOT_OMITTED}));
    let kept = &v["messages"][8]["content"][0]["content"];
    assert_eq!(kept[1]["type"], "image", "the 4th screenshot is kept");
    // 4 → under keep + chunk: untouched until 6
    assert_eq!(t.prune_images(3, 3), 0);
    for i in 7..9 {
        t.push_anthropic(vec![tool_use(&format!("t{i}"))]);
        t.push_results(vec![outcome(&format!("t{i}"), None, true)])
            .expect("results");
    }
    assert_eq!(t.image_count(), 6);
    assert_eq!(t.prune_images(3, 3), 3);
    assert_eq!(t.image_count(), 3);
    assert_eq!(t.prune_images(0, 1), 3);
    assert_eq!(t.image_count(), 0);
}

#[test]
fn prune_responses_and_chat_images() {
    let mut t = Transcript::new(Generation::Computer, "");
    t.push_user_text("go");
    for i in 0..4 {
        let id = format!("c{i}");
        t.push_responses(vec![computer_call(&id)]);
        t.push_results(vec![outcome(&id, None, true)]).expect("r");
    }
    assert_eq!(t.image_count(), 4);
    assert_eq!(t.prune_images(1, 2), 2);
    assert_eq!(t.image_count(), 2);
    let v = t.to_json();
    let url = v["messages"][2]["output"]["image_url"]
        .as_str()
        .expect("url");
    assert!(
        url.ends_with(PLACEHOLDER_PNG),
        "placeholder screenshot stays valid"
    );
    let before = t.estimate_tokens();
    assert_eq!(t.prune_images(0, 1), 2);
    assert_eq!(before - t.estimate_tokens(), 2 * TOKENS_PER_IMAGE);

    let mut c = Transcript::new(Generation::Functions, "");
    c.push_user_text("go");
    c.push_chat(
        None,
        vec![chat::ToolCall {
            id: "x".into(),
            kind: "function".into(),
            function: chat::FunctionCall {
                name: "screenshot".into(),
                arguments: "{}".into(),
            },
        }],
    );
    c.push_results(vec![outcome("x", None, true)]).expect("r");
    assert_eq!(c.image_count(), 1);
    assert_eq!(c.prune_images(0, 1), 1);
    assert!(c.to_json().to_string().contains(SCREENSHOT_OMITTED));
}

#[test]
fn estimate_tokens_counts_text_and_images() {
    let mut t = Transcript::new(Generation::Computer20250124, "");
    t.push_user_text(&"x".repeat(400));
    let base = t.estimate_tokens();
    assert!((100..110).contains(&base), "{base}");
    t.push_anthropic(vec![tool_use("a")]);
    t.push_results(vec![outcome("a", None, true)]).expect("r");
    assert!(t.estimate_tokens() >= base + TOKENS_PER_IMAGE);
}

/// Every tool_result answers a tool_use of the message right before it.
fn pairs_valid(t: &Transcript) -> bool {
    let v = t.to_json();
    let msgs = v["messages"].as_array().cloned().unwrap_or_default();
    if msgs.first().map(|m| m["role"] != "user").unwrap_or(false) {
        return false;
    }
    msgs.iter().enumerate().all(|(i, m)| {
        m["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "tool_result")
            .all(|b| {
                i > 0
                    && msgs[i - 1]["content"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|u| u["type"] == "tool_use" && u["id"] == b["tool_use_id"])
            })
    })
}

#[test]
fn compact_keeps_tool_pairs_valid() {
    // 0 u text, 1 a, 2 u res, 3 a, 4 u res, 5 a text, 6 u text, 7 a, 8 u res
    let mut t = anthropic_rounds(2);
    t.push_anthropic(vec![ContentBlock::text("done")]);
    t.push_user_text("now the next page");
    t.push_anthropic(vec![tool_use("t9")]);
    t.push_results(vec![outcome("t9", None, true)]).expect("r");
    assert_eq!(t.len(), 9);

    let mut k1 = t.clone();
    // the last user turn answers t9: its assistant turn is kept with it
    let text = k1.text_before(1);
    assert!(text.contains("User: open example.com"));
    assert!(text.contains("User: now the next page"));
    assert!(!text.contains("t9"));
    assert_eq!(k1.compact("they opened it", 1), 7);
    assert!(pairs_valid(&k1));
    let v = k1.to_json();
    assert_eq!(
        v["messages"][0]["content"][0]["text"],
        "Summary of the earlier conversation:\nthey opened it"
    );
    assert_eq!(v["messages"][1]["content"][0]["id"], "t9");
    assert_eq!(k1.len(), 3);

    let mut k2 = t.clone();
    // two user turns: the plain text turn at 6 is the cut; the summary joins it
    assert_eq!(k2.compact("s", 2), 6);
    assert!(pairs_valid(&k2));
    let v = k2.to_json();
    assert_eq!(v["messages"][0]["content"][1]["text"], "now the next page");
    assert_eq!(k2.len(), 3);

    // three user turns: 4 is a result turn → cut before its assistant turn 3
    let mut k3 = t.clone();
    assert_eq!(k3.compact("s", 3), 3);
    assert!(pairs_valid(&k3));

    // nothing to drop when fewer user turns than kept
    let mut k9 = t.clone();
    assert_eq!(k9.compact("s", 9), 0);
    assert_eq!(k9.text_before(9), "");
    assert_eq!(k9.len(), 9);
}

#[test]
fn compact_responses_and_chat_never_orphan_outputs() {
    let mut t = Transcript::new(Generation::Computer, "");
    t.push_user_text("go");
    for i in 0..3 {
        let id = format!("c{i}");
        t.push_responses(vec![computer_call(&id)]);
        t.push_results(vec![outcome(&id, Some("note"), true)])
            .expect("r");
    }
    // items: 0 u, 1 call, 2 out, 3 u(note), 4 call, 5 out, 6 u, 7 call, 8 out, 9 u
    assert_eq!(t.compact("s", 1), 7);
    let v = t.to_json();
    assert_eq!(v["messages"][1]["type"], "computer_call");
    assert_eq!(v["messages"][2]["type"], "computer_call_output");
    assert_eq!(v["messages"][2]["call_id"], v["messages"][1]["call_id"]);

    let mut c = Transcript::new(Generation::Functions, "");
    c.push_user_text("go");
    for i in 0..3 {
        let id = format!("x{i}");
        c.push_chat(
            None,
            vec![chat::ToolCall {
                id: id.clone(),
                kind: "function".into(),
                function: chat::FunctionCall {
                    name: "screenshot".into(),
                    arguments: "{}".into(),
                },
            }],
        );
        c.push_results(vec![outcome(&id, None, true)]).expect("r");
    }
    // 0 u, 1 a, 2 tool, 3 u(img), 4 a, 5 tool, 6 u, 7 a, 8 tool, 9 u
    assert_eq!(c.compact("s", 1), 7);
    let v = c.to_json();
    assert_eq!(v["messages"][1]["role"], "assistant");
    assert_eq!(v["messages"][2]["role"], "tool");
    assert_eq!(v["messages"][2]["tool_call_id"], "x2");
}

fn type_secret() -> ExtraTool {
    ExtraTool::new(
        "type_secret",
        "Types a stored credential.",
        json!({"type": "object", "properties": {"name": {"type": "string"},
               "field": {"type": "string"}}, "required": ["name", "field"]}),
    )
}

#[test]
fn extra_tools_follow_the_computer_tool_in_every_family() {
    let extra = [type_secret()];
    for g in Generation::all() {
        let mut t = Transcript::new(*g, "sys");
        t.push_user_text("log in");
        let spec = ProviderSpec::new(*g, "m");
        let v = match g.family() {
            Family::Anthropic => serde_json::to_value(t.anthropic_request(&spec, &extra)),
            Family::Responses => serde_json::to_value(t.responses_request(&spec, &extra)),
            Family::Chat => serde_json::to_value(t.chat_request(
                &spec,
                &crate::functions::default_tools(),
                &extra,
            )),
        }
        .expect("json");
        let tools = v["tools"].as_array().expect("tools");
        let last = tools.last().expect("a tool");
        let schema = &type_secret().parameters;
        match g.family() {
            Family::Anthropic => {
                assert_eq!(tools.len(), 2, "{g}");
                assert_eq!(
                    *last,
                    json!({"name": "type_secret", "description": "Types a stored credential.",
                           "input_schema": schema}),
                    "{g}"
                );
            }
            Family::Responses => {
                assert_eq!(tools.len(), 2, "{g}");
                assert_eq!(last["type"], "function");
                assert_eq!(last["name"], "type_secret");
                assert_eq!(last["parameters"], *schema);
            }
            Family::Chat => {
                assert_eq!(tools.len(), crate::functions::default_tools().len() + 1);
                assert_eq!(last["function"]["name"], "type_secret");
                assert_eq!(last["function"]["parameters"], *schema);
            }
        }
    }
}

#[test]
fn extra_tool_results_per_family() {
    // Anthropic: a tool_result without toolset_name, text and image
    let mut t = Transcript::new(Generation::ComputerToolset20260801, "");
    t.push_user_text("log in");
    t.push_anthropic(vec![ContentBlock::ToolUse(anthropic::ToolUseBlock {
        id: "toolu_s".into(),
        name: "type_secret".into(),
        input: json!({"name": "site", "field": "password"}),
        toolset_name: None,
        cache_control: None,
        extra: Map::new(),
    })]);
    t.push_results(vec![outcome("toolu_s", Some("Typed."), true)])
        .expect("results");
    let v = t.to_json();
    let r = &v["messages"][2]["content"][0];
    assert_eq!(r["type"], "tool_result");
    assert_eq!(r["tool_use_id"], "toolu_s");
    assert!(r.get("toolset_name").is_none());
    assert_eq!(r["content"][0], json!({"type": "text", "text": "Typed."}));
    assert_eq!(r["content"][1]["type"], "image");

    // Responses: a function_call_output with the text (an image is not sent for a function)
    let mut t = Transcript::new(Generation::Computer, "");
    t.push_user_text("log in");
    let call: Item = serde_json::from_value(json!({"type": "function_call", "id": "fc_1",
        "call_id": "call_s", "name": "type_secret",
        "arguments": "{\"name\":\"site\",\"field\":\"password\"}", "status": "completed"}))
    .expect("item");
    t.push_responses(vec![call]);
    t.push_results(vec![outcome("call_s", Some("Typed."), true)])
        .expect("results");
    let v = t.to_json();
    let items = v["messages"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert_eq!(
        items[2],
        json!({"type": "function_call_output", "call_id": "call_s", "output": "Typed."})
    );

    // Chat: a tool message
    let mut t = Transcript::new(Generation::Functions, "");
    t.push_user_text("log in");
    t.push_chat(
        None,
        vec![chat::ToolCall {
            id: "call_c".into(),
            kind: "function".into(),
            function: chat::FunctionCall {
                name: "type_secret".into(),
                arguments: "{\"name\":\"site\",\"field\":\"password\"}".into(),
            },
        }],
    );
    t.push_results(vec![ToolOutcome::error("call_c", "no such secret")])
        .expect("results");
    let v = t.to_json();
    assert_eq!(
        v["messages"][2],
        json!({"role": "tool", "tool_call_id": "call_c", "content": "Error: no such secret"})
    );
}
