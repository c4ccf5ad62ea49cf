//! The agent loop against the fake provider (in-process, over real HTTP) with a scripted
//! desktop: a 200-turn session stays under its token budget through summaries and image
//! pruning; a stop ends a turn with every tool call answered; the step limit holds; a pending
//! safety check waits for a person and is acknowledged only after approval.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use zigral_agent::{Acted, Answer, Approval, Env, Halt, Outcome, Report, Settings, run_turn};
use zigral_fake_llm::LocalFake;
use zigral_llm::{ApiKey, Client, ToolCall, ToolOutcome, Transcript};
use zigral_store::{AgentProfileRecord, AgentProvider, HitlSettings};

/// A 1×1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/// The in-process fake provider (key `k`).
struct Fake {
    local: LocalFake,
}

async fn fake() -> Fake {
    let local = LocalFake::start(zigral_fake_llm::Config {
        api_key: "k".into(),
    })
    .await
    .expect("start the fake");
    Fake { local }
}

impl Fake {
    async fn script(&self, steps: Value) {
        self.local.script(steps).await.expect("script");
    }
    async fn get(&self, what: &str) -> Vec<Value> {
        let v = self.local.get(&format!("/{what}")).await.expect("get");
        match v {
            Value::Array(a) => a,
            other => other[what.trim_start_matches("_")]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        }
    }
}

fn profile(generation: &str, budget: u32, keep_images: u32, max_steps: u32) -> Settings {
    Settings::check(&AgentProfileRecord {
        id: "p1".into(),
        owner: "u1".into(),
        name: "test".into(),
        system_prompt: "You drive a browser.".into(),
        provider: AgentProvider {
            generation: generation.into(),
            model: "m".into(),
            base_url: None,
            max_tokens: 1024,
            thinking: None,
            max_retries: 2,
            timeout_secs: 30,
            api_key_env: None,
        },
        start_url: None,
        allowed_domains: vec![],
        max_steps,
        context_budget_tokens: budget,
        keep_images,
        hitl: HitlSettings::default(),
        risky_patterns: vec![],
        api_key_set: true,
        created_at: 0,
        updated_at: 0,
    })
    .expect("valid profile")
}

fn client(f: &Fake, s: &Settings) -> Client {
    let mut spec = s.provider_spec(Some(ApiKey::new("k".into())), (1280, 800));
    spec.base_url = f.local.base_url().to_string();
    Client::new(spec).expect("client")
}

/// A desktop that answers every call with a screenshot; counts what happened.
#[derive(Default)]
struct Desk {
    acts: AtomicU32,
    stop_after: Option<u32>,
    stopped: tokio::sync::Notify,
    is_stopped: std::sync::atomic::AtomicBool,
    approvals: Mutex<Vec<bool>>,
    answer: bool,
    reports: Mutex<Vec<String>>,
    notes: Mutex<Vec<String>>,
}

impl Env for Desk {
    fn gate(&self) -> BoxFuture<'_, Result<(), Halt>> {
        async move {
            if self.is_stopped.load(Ordering::SeqCst) {
                Err(Halt::Stopped)
            } else {
                Ok(())
            }
        }
        .boxed()
    }
    fn stopped(&self) -> BoxFuture<'_, ()> {
        async move {
            if !self.is_stopped.load(Ordering::SeqCst) {
                self.stopped.notified().await;
            }
        }
        .boxed()
    }
    fn act<'a>(&'a self, _step: u32, call: &'a ToolCall) -> BoxFuture<'a, Acted> {
        async move {
            let n = self.acts.fetch_add(1, Ordering::SeqCst) + 1;
            if self.stop_after == Some(n) {
                self.is_stopped.store(true, Ordering::SeqCst);
                self.stopped.notify_waiters();
            }
            Acted {
                outcome: ToolOutcome {
                    call_id: call.id.clone(),
                    text: Some("ok".into()),
                    image: Some(zigral_llm::Image {
                        media_type: "image/png".into(),
                        base64: PNG.into(),
                    }),
                    is_error: false,
                    acknowledged: vec![],
                    current_url: Some("https://example.com/".into()),
                },
                ok: true,
            }
        }
        .boxed()
    }
    fn look(&self) -> BoxFuture<'_, Option<zigral_llm::Image>> {
        async move {
            Some(zigral_llm::Image {
                media_type: "image/png".into(),
                base64: PNG.into(),
            })
        }
        .boxed()
    }
    fn approve(&self, _what: Approval) -> BoxFuture<'_, Result<Answer, Halt>> {
        async move {
            self.approvals.lock().expect("lock").push(self.answer);
            Ok(Answer {
                approved: self.answer,
                reason: None,
            })
        }
        .boxed()
    }
    fn risk_context<'a>(&'a self, _call: &'a ToolCall) -> BoxFuture<'a, String> {
        async { "element: button \"Send\" | url: https://example.com/".to_owned() }.boxed()
    }
    fn notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().expect("lock"))
    }
    fn report(&self, r: Report) -> BoxFuture<'_, ()> {
        let name = match r {
            Report::Text { .. } => "text",
            Report::Request { .. } => "request",
            Report::Summarized { .. } => "summarized",
            Report::Pruned { .. } => "pruned",
            Report::Waiting { .. } => "waiting",
        };
        self.reports.lock().expect("lock").push(name.into());
        async {}.boxed()
    }
}

#[tokio::test]
async fn two_hundred_turns_stay_under_the_token_budget_through_summaries() {
    let f = fake().await;
    const BUDGET: u32 = 12_000;
    let s = profile("computer_20251124", BUDGET, 3, 10);
    let c = client(&f, &s);
    let mut t = Transcript::new(s.generation, &s.profile.system_prompt);
    let desk = Desk::default();
    for i in 0..200 {
        f.script(json!([
            {"calls": [{"action": "left_click", "coordinate": [10 + i, 20]}]},
            {"text": format!("Clicked {i}. {}", "All good here. ".repeat(20))}
        ]))
        .await;
        let out = run_turn(
            &c,
            &mut t,
            &s,
            &desk,
            Some(&format!(
                "Turn {i}: click the next item and tell me what you see."
            )),
        )
        .await;
        assert_eq!(out.outcome, Outcome::EndTurn, "turn {i}");
        assert_eq!(out.steps, 1);
        assert!(
            out.context_tokens <= BUDGET,
            "turn {i}: sent {} tokens, budget {BUDGET}",
            out.context_tokens
        );
    }
    let reports = desk.reports.lock().expect("lock").clone();
    let summaries = reports.iter().filter(|r| *r == "summarized").count();
    assert!(summaries >= 5, "summaries: {summaries}");
    assert!(reports.iter().any(|r| r == "pruned"));
    // What the provider received agrees: no request's input is over the budget (the fake
    // counts its own estimate: chars/4 + 1600 per image), and nothing was invalid.
    let reqs = f.get("_requests").await;
    let model_requests: Vec<&Value> = reqs
        .iter()
        .filter(|r| r["body"]["tools"].as_array().is_some_and(|t| !t.is_empty()))
        .collect();
    assert_eq!(model_requests.len(), 400);
    assert!(f.get("_violations").await.is_empty());
    assert!(t.estimate_tokens() <= BUDGET);
}

#[tokio::test]
async fn a_stop_answers_every_call_and_the_step_limit_holds() {
    let f = fake().await;
    let s = profile("computer_toolset_20260801", 100_000, 0, 3);
    let c = client(&f, &s);
    let mut t = Transcript::new(s.generation, "sys");
    // Three calls in one reply; the desktop stops after the first.
    let desk = Desk {
        stop_after: Some(1),
        ..Default::default()
    };
    f.script(json!([{"calls": [
        {"action": "screenshot"}, {"action": "left_click", "coordinate": [1, 1]},
        {"action": "type", "text": "x"}]}]))
        .await;
    let out = run_turn(&c, &mut t, &s, &desk, Some("go")).await;
    assert_eq!(out.outcome, Outcome::Stopped);
    assert_eq!(desk.acts.load(Ordering::SeqCst), 1);
    // The next turn is valid: every tool_use got a tool_result (the fake checks pairing).
    let desk = Desk::default();
    f.script(json!([
        {"calls": [{"action": "screenshot"}, {"action": "screenshot"}]},
        {"calls": [{"action": "screenshot"}, {"action": "screenshot"}]},
        {"text": "never reached"}
    ]))
    .await;
    let out = run_turn(&c, &mut t, &s, &desk, Some("again")).await;
    assert_eq!(out.outcome, Outcome::MaxSteps);
    assert_eq!(out.steps, 3, "max_steps = 3");
    assert!(
        f.get("_violations").await.is_empty(),
        "{:?}",
        f.get("_violations").await
    );
}

#[tokio::test]
async fn safety_checks_wait_for_a_person_and_are_acknowledged_only_when_approved() {
    let f = fake().await;
    let s = profile("computer", 100_000, 3, 10);
    let c = client(&f, &s);
    let mut t = Transcript::new(s.generation, "sys");
    let desk = Desk {
        answer: true,
        ..Default::default()
    };
    f.script(json!([
        {"calls": [{"action": "left_click", "coordinate": [5, 5]}],
         "safety_check": {"code": "sensitive_domain", "message": "banking site"}},
        {"text": "done"}
    ]))
    .await;
    let out = run_turn(&c, &mut t, &s, &desk, Some("go")).await;
    assert_eq!(out.outcome, Outcome::EndTurn);
    assert_eq!(*desk.approvals.lock().expect("lock"), [true]);
    assert_eq!(desk.acts.load(Ordering::SeqCst), 1);
    assert!(f.get("_violations").await.is_empty());
    let reqs = f.get("_requests").await;
    let last = &reqs.last().expect("requests")["body"];
    let out_item = last["input"]
        .as_array()
        .expect("input")
        .iter()
        .find(|i| i["type"] == "computer_call_output")
        .expect("computer_call_output")
        .clone();
    assert_eq!(
        out_item["acknowledged_safety_checks"][0]["code"],
        "sensitive_domain"
    );

    // Declined: the action does not run and the turn ends.
    let desk = Desk::default();
    f.script(json!([
        {"calls": [{"action": "left_click", "coordinate": [5, 5]}],
         "safety_check": {"code": "malicious_instructions", "message": "injected text"}},
    ]))
    .await;
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        run_turn(&c, &mut t, &s, &desk, Some("again")),
    )
    .await
    .expect("turn ends");
    assert!(
        matches!(out.outcome, Outcome::Declined(_)),
        "{:?}",
        out.outcome
    );
    assert_eq!(desk.acts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn risky_patterns_match_the_element_under_the_pointer_and_notes_reach_the_model() {
    let f = fake().await;
    let mut rec = profile("computer_20251124", 100_000, 3, 10).profile;
    rec.hitl.approve_risky = true;
    // Nothing in the call itself says "Send": only the element under the pointer does.
    rec.risky_patterns = vec![r#"(?i)button "send""#.into()];
    let s = Settings::check(&rec).expect("valid");
    let c = client(&f, &s);
    let mut t = Transcript::new(s.generation, "sys");
    let desk = Desk {
        answer: false,
        ..Default::default()
    };
    desk.notes
        .lock()
        .expect("lock")
        .push("A person undid your last 2 step(s).".into());
    f.script(json!([
        {"calls": [{"action": "left_click", "coordinate": [5, 5]}]},
    ]))
    .await;
    let out = run_turn(&c, &mut t, &s, &desk, Some("send it")).await;
    assert!(
        matches!(&out.outcome, Outcome::Declined(w) if w.contains("risky")),
        "{:?}",
        out.outcome
    );
    assert_eq!(*desk.approvals.lock().expect("lock"), [false]);
    assert_eq!(
        desk.acts.load(Ordering::SeqCst),
        0,
        "a declined action never runs"
    );
    let reqs = f.get("_requests").await;
    let first = reqs.first().expect("a request")["body"].to_string();
    assert!(
        first.contains("A person undid your last 2 step(s)."),
        "the note goes with the next request"
    );
    assert!(f.get("_violations").await.is_empty());
}
