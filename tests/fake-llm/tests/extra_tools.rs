//! Extra tools (besides the computer tool) and the request redactor, zigral-llm client against
//! the fake over real HTTP: for every tool generation the model calls `type_secret`, the
//! client hands it back as a function call, the text result goes back in the family's shape and
//! the fake records no violation; the fake rejects calls to undeclared tools, malformed tool
//! definitions and wrongly shaped answers; a redactor rewrites every request body (retries and
//! summaries included) while the transcript keeps the original text.

use std::sync::Arc;

use serde_json::{Value, json};
use zigral_fake_llm::LocalFake;
use zigral_llm::{
    ApiKey, Call, Client, ExtraTool, Family, Generation, LlmError, ProviderSpec, Stop, ToolOutcome,
    Transcript,
};

const KEY: &str = "test-key";

fn type_secret() -> ExtraTool {
    ExtraTool::new(
        "type_secret",
        "Types a stored credential into the focused field; you never see its value.",
        json!({"type": "object",
               "properties": {"name": {"type": "string"}, "field": {"type": "string",
                              "enum": ["username", "password", "totp"]}},
               "required": ["name", "field"], "additionalProperties": false}),
    )
}

fn request_human_input() -> ExtraTool {
    ExtraTool::new(
        "request_human_input",
        "Asks the person watching for something only they can do or know.",
        json!({"type": "object",
               "properties": {"kind": {"type": "string"}, "prompt": {"type": "string"}},
               "required": ["kind", "prompt"]}),
    )
}

async fn fake() -> LocalFake {
    LocalFake::start(zigral_fake_llm::Config::default())
        .await
        .expect("start the fake")
}

fn client(fake: &LocalFake, generation: Generation, stream: bool) -> Client {
    let mut spec = ProviderSpec::new(generation, "fake-model");
    spec.base_url = fake.base_url().to_string();
    spec.api_key = Some(ApiKey::new(KEY.into()));
    spec.stream = stream;
    Client::new(spec).expect("client")
}

/// The request bodies the fake recorded.
async fn bodies(fake: &LocalFake) -> Vec<Value> {
    let requests = fake.get("/_requests").await.expect("requests");
    requests
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["body"].clone())
        .collect()
}

/// The `type_secret` definition in a request body, in the family's shape, if it is there.
fn type_secret_definition(family: Family, body: &Value) -> Option<Value> {
    let tools = body["tools"].as_array()?;
    let t = type_secret();
    let want = match family {
        Family::Anthropic => {
            json!({"name": t.name, "description": t.description, "input_schema": t.parameters})
        }
        Family::Responses => json!({"type": "function", "name": t.name,
                                    "description": t.description, "parameters": t.parameters}),
        Family::Chat => json!({"type": "function", "function": {"name": t.name,
                               "description": t.description, "parameters": t.parameters}}),
    };
    tools.iter().find(|d| **d == want).cloned()
}

/// The answer to call `id` in a request body, in the family's shape.
fn answer_of(family: Family, body: &Value, id: &str) -> Option<Value> {
    let list = match family {
        Family::Anthropic => body["messages"]
            .as_array()?
            .iter()
            .filter_map(|m| m["content"].as_array())
            .flatten()
            .cloned()
            .collect::<Vec<_>>(),
        Family::Responses => body["input"].as_array()?.clone(),
        Family::Chat => body["messages"].as_array()?.clone(),
    };
    list.into_iter().find(|x| match family {
        Family::Anthropic => x["type"] == "tool_result" && x["tool_use_id"] == id,
        Family::Responses => x["type"] == "function_call_output" && x["call_id"] == id,
        Family::Chat => x["role"] == "tool" && x["tool_call_id"] == id,
    })
}

async fn type_secret_round_trip(generation: Generation, stream: bool) {
    let family = generation.family();
    let fake = fake().await;
    let args = json!({"name": "site", "field": "password"});
    fake.script(json!([
        {"calls": [{"tool": "type_secret", "input": args}], "text": "Typing the password."},
        {"text": "Logged in."},
    ]))
    .await
    .expect("script");
    let client = client(&fake, generation, stream)
        .with_extra_tools(vec![type_secret(), request_human_input()])
        .expect("extra tools");
    let mut t = Transcript::new(generation, "You drive a desktop.");
    t.push_user_text("log in to the site");

    let reply = client.next(&mut t, &mut |_| {}).await.expect("first turn");
    assert_eq!(reply.stop, Stop::ToolUse, "{generation}");
    let [call] = reply.calls.as_slice() else {
        panic!("{generation}: want one call, got {:?}", reply.calls)
    };
    assert_eq!(
        call.call,
        Call::Function {
            name: "type_secret".into(),
            arguments: args.clone()
        },
        "{generation}"
    );
    t.push_results(vec![ToolOutcome {
        call_id: call.id.clone(),
        text: Some("Typed the password of site.".into()),
        ..ToolOutcome::default()
    }])
    .expect("results");
    let reply = client.next(&mut t, &mut |_| {}).await.expect("second turn");
    assert_eq!(reply.text, "Logged in.", "{generation}");
    assert_eq!(reply.stop, Stop::EndTurn, "{generation}");

    let violations = fake.get("/_violations").await.expect("violations");
    assert_eq!(violations, json!([]), "{generation} stream={stream}");
    let bodies = bodies(&fake).await;
    assert_eq!(bodies.len(), 2, "{generation}");
    for (i, b) in bodies.iter().enumerate() {
        assert!(
            type_secret_definition(family, b).is_some(),
            "{generation}: request {i} lacks the type_secret definition: {}",
            b["tools"]
        );
        // the computer tool comes first
        let first = &b["tools"][0];
        match family {
            Family::Anthropic | Family::Responses => {
                assert!(
                    first["type"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("computer"))
                )
            }
            Family::Chat => assert_ne!(first["function"]["name"], "type_secret"),
        }
    }
    let answer = answer_of(family, &bodies[1], &call.id).expect("the call was answered");
    match family {
        Family::Anthropic => {
            assert!(answer.get("toolset_name").is_none(), "{answer}");
            assert_eq!(answer["content"][0]["text"], "Typed the password of site.");
        }
        Family::Responses => assert_eq!(answer["output"], "Typed the password of site."),
        Family::Chat => assert_eq!(answer["content"], "Typed the password of site."),
    }
}

#[tokio::test]
async fn type_secret_computer_20250124() {
    type_secret_round_trip(Generation::Computer20250124, true).await;
    type_secret_round_trip(Generation::Computer20250124, false).await;
}

#[tokio::test]
async fn type_secret_computer_20251124() {
    type_secret_round_trip(Generation::Computer20251124, true).await;
    type_secret_round_trip(Generation::Computer20251124, false).await;
}

#[tokio::test]
async fn type_secret_computer_toolset_20260801() {
    type_secret_round_trip(Generation::ComputerToolset20260801, true).await;
    type_secret_round_trip(Generation::ComputerToolset20260801, false).await;
}

#[tokio::test]
async fn type_secret_computer_use_preview() {
    type_secret_round_trip(Generation::ComputerUsePreview, true).await;
    type_secret_round_trip(Generation::ComputerUsePreview, false).await;
}

#[tokio::test]
async fn type_secret_responses_computer_ga() {
    type_secret_round_trip(Generation::Computer, true).await;
    type_secret_round_trip(Generation::Computer, false).await;
}

#[tokio::test]
async fn type_secret_chat_functions() {
    type_secret_round_trip(Generation::Functions, true).await;
    type_secret_round_trip(Generation::Functions, false).await;
}

/// A computer action and an extra tool call in one turn, answered together.
#[tokio::test]
async fn computer_action_and_extra_tool_in_one_turn() {
    const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
    for g in Generation::all() {
        let fake = fake().await;
        fake.script(json!([
            {"calls": [{"action": "left_click", "coordinate": [10, 20]},
                       {"tool": "request_human_input",
                        "input": {"kind": "captcha", "prompt": "Please solve the captcha."}}]},
            {"text": "Done."},
        ]))
        .await
        .expect("script");
        let client = client(&fake, *g, true)
            .with_extra_tools(vec![request_human_input()])
            .expect("tools");
        let mut t = Transcript::new(*g, "");
        t.push_user_text("sign up");
        let reply = client.next(&mut t, &mut |_| {}).await.expect("turn");
        let asks: Vec<&Value> = reply
            .calls
            .iter()
            .filter_map(|c| match &c.call {
                Call::Function { name, arguments } if name == "request_human_input" => {
                    Some(arguments)
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            asks,
            [&json!({"kind": "captcha", "prompt": "Please solve the captcha."})],
            "{g}"
        );
        assert!(reply.calls.len() >= 2, "{g}: {:?}", reply.calls);
        let outcomes = reply
            .calls
            .iter()
            .map(|c| {
                let function = matches!(c.call, Call::Function { .. });
                ToolOutcome {
                    call_id: c.id.clone(),
                    text: Some(if function { "Solved." } else { "Clicked." }.into()),
                    image: (!function).then(|| zigral_llm::Image {
                        media_type: "image/png".into(),
                        base64: PNG.into(),
                    }),
                    ..ToolOutcome::default()
                }
            })
            .collect();
        t.push_results(outcomes).expect("results");
        let reply = client.next(&mut t, &mut |_| {}).await.expect("turn");
        assert_eq!(reply.text, "Done.", "{g}");
        let violations = fake.get("/_violations").await.expect("violations");
        assert_eq!(violations, json!([]), "{g}");
    }
}

/// A scripted call to a tool the request did not declare is a violation, and the step stays.
#[tokio::test]
async fn calls_to_undeclared_tools_are_violations() {
    for g in Generation::all() {
        let fake = fake().await;
        fake.script(json!([{"calls": [{"tool": "type_secret", "input": {}}]}]))
            .await
            .expect("script");
        // declares another extra tool, not type_secret
        let client = client(&fake, *g, false)
            .with_extra_tools(vec![request_human_input()])
            .expect("tools");
        let mut t = Transcript::new(*g, "");
        t.push_user_text("log in");
        let e = client
            .next(&mut t, &mut |_| {})
            .await
            .expect_err("rejected");
        assert!(matches!(e, LlmError::Api { status: 400, .. }), "{g}: {e:?}");
        let violations = fake.get("/_violations").await.expect("violations");
        let v = violations.as_array().expect("array");
        assert_eq!(v.len(), 1, "{g}: {violations}");
        assert!(
            v[0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("\"type_secret\"")),
            "{g}: {violations}"
        );
        let stats = fake.get("/_stats").await.expect("stats");
        assert_eq!(stats["script_remaining"], 1, "{g}");
    }
}

async fn post(fake: &LocalFake, family: Family, body: &Value) -> (u16, Value) {
    let url = format!("{}{}", fake.base_url(), family.path());
    let mut r = fake.http().post(url).json(body);
    r = match family {
        Family::Anthropic => r
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01"),
        Family::Responses | Family::Chat => r.bearer_auth(KEY),
    };
    let resp = r.send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

/// Each body is rejected with a 400 whose message contains the expected words.
async fn rejected(fake: &LocalFake, family: Family, cases: &[(Value, &str)]) {
    for (body, words) in cases {
        let (status, answer) = post(fake, family, body).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(
            answer.to_string().contains(words),
            "{body}: want {words:?} in {answer}"
        );
    }
}

#[tokio::test]
async fn malformed_tool_definitions_are_violations() {
    let fake = fake().await;
    let schema = json!({"type": "object", "properties": {}});
    let toolset = json!({"type": "computer_toolset_20260801"});
    let a = |tool: Value| {
        json!({"model": "m", "max_tokens": 10, "tools": [toolset, tool],
               "messages": [{"role": "user", "content": "hi"}]})
    };
    rejected(
        &fake,
        Family::Anthropic,
        &[
            // the OpenAI shape sent to Anthropic
            (
                a(json!({"name": "type_secret", "parameters": schema})),
                "input_schema: Field required",
            ),
            (
                a(json!({"name": "type secret", "input_schema": schema})),
                "should match pattern",
            ),
            (
                a(json!({"name": "t", "input_schema": {"type": "string"}})),
                "must be of type 'object'",
            ),
            (a(json!({"input_schema": schema})), "name: Field required"),
            (
                json!({"model": "m", "max_tokens": 10,
                       "tools": [{"name": "t", "input_schema": schema},
                                 {"type": "custom", "name": "t", "input_schema": schema}],
                       "messages": [{"role": "user", "content": "hi"}]}),
                "Tool names must be unique",
            ),
        ],
    )
    .await;
    let r =
        |tool: Value| json!({"model": "m", "tools": [{"type": "computer"}, tool], "input": "hi"});
    rejected(
        &fake,
        Family::Responses,
        &[
            (
                r(json!({"type": "function", "name": "t", "parameters": {"type": "array"}})),
                "Invalid schema for function",
            ),
            (
                r(json!({"type": "function", "name": "t.x", "parameters": schema})),
                "does not match pattern",
            ),
            (
                r(json!({"type": "function", "parameters": schema})),
                "tools[1].name",
            ),
        ],
    )
    .await;
    let c = |tools: Value| json!({"model": "m", "tools": tools, "messages": [{"role": "user", "content": "hi"}]});
    let f =
        |name: &str| json!({"type": "function", "function": {"name": name, "parameters": schema}});
    rejected(
        &fake,
        Family::Chat,
        &[
            (
                c(json!([f("left_click"), f("a b")])),
                "does not match pattern",
            ),
            (c(json!([f("t"), f("t")])), "Duplicate function name"),
        ],
    )
    .await;
    let stats = fake.get("/_stats").await.expect("stats");
    assert_eq!(stats["rejected"], 10, "{stats}");
}

/// Answers in the wrong shape: an Anthropic tool_result with a toolset_name for a client tool,
/// a Responses function call answered as a computer call or not at all.
#[tokio::test]
async fn extra_tool_answers_must_have_the_right_shape() {
    let fake = fake().await;
    let schema = json!({"type": "object"});
    let tools = json!([{"type": "computer_toolset_20260801"},
                       {"name": "type_secret", "input_schema": schema}]);
    let use_block = json!({"type": "tool_use", "id": "toolu_1", "name": "type_secret",
                           "input": {"name": "site", "field": "password"}});
    let body = |result: Value| {
        json!({"model": "m", "max_tokens": 10, "tools": tools, "messages": [
            {"role": "user", "content": "log in"},
            {"role": "assistant", "content": [use_block]},
            {"role": "user", "content": [result]},
        ]})
    };
    let ok = json!({"type": "tool_result", "tool_use_id": "toolu_1", "content": "Typed."});
    let mut with_toolset = ok.clone();
    with_toolset["toolset_name"] = json!("computer");
    let (status, answer) = post(&fake, Family::Anthropic, &body(ok)).await;
    assert_eq!(status, 200, "{answer}");
    rejected(
        &fake,
        Family::Anthropic,
        &[(body(with_toolset), "not a toolset member")],
    )
    .await;

    let call = json!({"type": "function_call", "call_id": "call_1", "name": "type_secret",
                      "arguments": "{\"name\":\"site\",\"field\":\"password\"}"});
    let tools = json!([{"type": "computer"},
                       {"type": "function", "name": "type_secret", "parameters": schema}]);
    let body = |rest: Vec<Value>| {
        let mut input = vec![json!({"role": "user", "content": "log in"}), call.clone()];
        input.extend(rest);
        json!({"model": "m", "tools": tools, "input": input})
    };
    let (status, answer) = post(
        &fake,
        Family::Responses,
        &body(vec![
            json!({"type": "function_call_output", "call_id": "call_1", "output": "Typed."}),
        ]),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    rejected(
        &fake,
        Family::Responses,
        &[
            (body(vec![]), "No tool output found for function call call_1"),
            (
                body(vec![json!({"type": "computer_call_output", "call_id": "call_1",
                    "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,iVBORw0KGgo="}})]),
                "No tool call found for computer call output with call_id call_1",
            ),
            (
                body(vec![
                    json!({"type": "function_call_output", "call_id": "call_1", "output": 5}),
                ]),
                "Invalid type for 'input[2].output'",
            ),
        ],
    )
    .await;
}

/// The redactor rewrites every request body (first attempt, retry, summary); the transcript
/// keeps the original text.
#[tokio::test]
async fn redactor_rewrites_every_request_body() {
    for g in Generation::all() {
        let fake = fake().await;
        fake.script(json!([
            {"fault": "status", "status": 429, "retry_after_ms": 10},
            {"text": "Done."},
        ]))
        .await
        .expect("script");
        let client = client(&fake, *g, g.family() != Family::Responses)
            .with_extra_tools(vec![type_secret()])
            .expect("tools")
            .with_redactor(Arc::new(|s: &str| {
                s.replace("hunter2-secret", "<secret:pw>")
            }));
        assert!(!format!("{client:?}").contains("hunter2"));
        let mut t = Transcript::new(*g, "");
        t.push_user_text("my password is hunter2-secret, log in");
        let reply = client.next(&mut t, &mut |_| {}).await.expect("turn");
        assert_eq!(reply.retries, 1, "{g}");
        assert_eq!(reply.text, "Done.", "{g}");
        client
            .summarize("user: the password is hunter2-secret")
            .await
            .expect("summary");
        assert!(
            t.to_json().to_string().contains("hunter2-secret"),
            "the transcript is not changed"
        );
        let requests = fake.get("/_requests").await.expect("requests");
        let all = requests.as_array().expect("array");
        assert_eq!(all.len(), 3, "{g}: first attempt, retry, summary");
        for r in all {
            let body = r["body"].to_string();
            assert!(body.contains("<secret:pw>"), "{g}: {body}");
            assert!(!body.contains("hunter2-secret"), "{g}: {body}");
        }
        let violations = fake.get("/_violations").await.expect("violations");
        assert_eq!(violations, json!([]), "{g}");
    }
}
