//! The built-in agent end to end: a real Xvfb and Chromium, pages on 127.0.0.1, a port-0
//! control plane, and the fake LLM provider (`zigral-fake-llm`, its own binary) speaking each
//! wire format. A scripted model fills and submits a form once per format; faults are retried
//! or shown in the chat; stop/pause/resume; a URL typed into the omnibox outside the allowed
//! domains does not leave the page.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use zigral_browser::Browser;
use zigral_browser::testkit::{Chrome, PageServer, Response};
use zigral_tests::Xvfb;
use zigral_tests::fake_llm::FakeLlm;

/// A form: a name field and a Send button; submitting sets the title.
const FORM: &str = r#"<!doctype html><html><head><title>Form</title>
<style>body{margin:0;font:18px sans-serif}
#name{position:absolute;left:100px;top:100px;width:400px;height:40px;font-size:18px}
#go{position:absolute;left:100px;top:200px;width:200px;height:50px}</style></head><body>
<form id="f" autocomplete="off"><input id="name" aria-label="Name" autocomplete="off"><button id="go" type="submit">Send</button></form>
<script>window.clicks = 0; document.addEventListener('click', () => window.clicks++, true);
document.getElementById('f').addEventListener('submit', e => {
  e.preventDefault(); document.title = 'Submitted: ' + document.getElementById('name').value; });
</script></body></html>"#;

/// Screen and declared display: 1440×900 is 16:10, so the model sees WXGA (1280×800).
const SCREEN: (u32, u32) = (1440, 900);
const DECLARED: (u32, u32) = (1280, 800);

use common::Ws;

struct Env {
    _x: Xvfb,
    _chrome: Chrome,
    _dir: tempfile::TempDir,
    pages: PageServer,
    srv: common::Server,
    fake: FakeLlm,
    token: String,
    sid: String,
}

async fn env() -> Env {
    let common::Desktop {
        x,
        chrome,
        dir,
        pages,
        srv,
        token,
    } = common::desktop(SCREEN.0, SCREEN.1, |_| {}).await;
    pages.page("/form", Response::html(FORM));
    let sid = srv.session(&token, None).await;
    Env {
        _x: x,
        _chrome: chrome,
        _dir: dir,
        pages,
        srv,
        fake: FakeLlm::start("fake-key-for-tests"),
        token,
        sid,
    }
}

impl Env {
    fn path(&self, rest: &str) -> String {
        format!("/api/v1/sessions/{}{rest}", self.sid)
    }

    async fn call(&self, m: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.srv.call(m, path, Some(&self.token), body).await
    }

    /// Creates a profile for `generation` talking to the fake provider; returns its id.
    async fn profile(&self, generation: &str, extra: Value) -> String {
        let mut body = json!({
            "name": format!("form filler ({generation})"),
            "system_prompt": "Fill in forms.",
            "provider": {"generation": generation, "model": "fake-model",
                         "base_url": self.fake.base_url(), "max_tokens": 2048,
                         "timeout_secs": 30},
            "max_steps": 20,
            "api_key": self.fake.key,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                match (b.get_mut(k), v) {
                    (Some(Value::Object(old)), Value::Object(new)) => {
                        old.extend(new.clone());
                    }
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let (s, v) = self.call(Method::POST, "/api/v1/agents", Some(body)).await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["api_key_set"], true);
        assert!(v.get("api_key").is_none(), "the key is write-only: {v}");
        let id = v["id"].as_str().expect("id").to_owned();
        let (s, v) = self
            .call(
                Method::PUT,
                &self.path("/agent"),
                Some(json!({"profile": id})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        id
    }

    async fn chat(&self, text: &str, wait: bool) -> (u16, Value) {
        self.call(
            Method::POST,
            &self.path("/chat"),
            Some(json!({"text": text, "wait": wait})),
        )
        .await
    }

    async fn browser(&self) -> Browser {
        self.srv.browser().await
    }

    async fn eval(&self, expr: &str) -> Value {
        self.browser().await.evaluate(expr).await.expect("eval")
    }

    async fn open_form(&self) {
        let (s, v) = self
            .call(
                Method::POST,
                &self.path("/actions"),
                Some(json!({"action": "navigate", "url": self.pages.url("/form")})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        self.eval("window.focus(); true").await;
        // Chrome drops input to a new same-origin page until it has painted ("paint
        // holding"): click an empty spot until the page counts a click.
        let start = Instant::now();
        loop {
            let (s, v) = self
                .call(
                    Method::POST,
                    &self.path("/actions"),
                    Some(json!({"action": "left_click", "x": 900, "y": 700})),
                )
                .await;
            assert_eq!(s, 200, "{v}");
            if self.eval("window.clicks").await.as_u64() > Some(0) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "the form page never took a click"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Declared-display coordinates of the centre of element `id`.
    async fn declared_center(&self, id: &str) -> [i64; 2] {
        let (sx, sy) = common::screen_center_f64(&self.browser().await, id).await;
        let f = f64::from(DECLARED.0) / f64::from(SCREEN.0);
        [(sx * f).round() as i64, (sy * f).round() as i64]
    }

    async fn ws(&self) -> Ws {
        self.srv.events(&self.token).await
    }

    async fn agent_state(&self) -> Value {
        let (s, v) = self.call(Method::GET, &self.path("/agent"), None).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn wait_state(&self, want: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.agent_state().await;
            if v["status"]["state"] == want {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "agent never became {want}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Events of this session until `agent.turn.ended` (inclusive).
async fn turn_events(ws: &mut Ws) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("an event within 60 s")
            .expect("stream open")
            .expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).expect("event json");
            let end = v["kind"] == "agent.turn.ended";
            out.push(v);
            if end {
                return out;
            }
        }
    }
}

#[tokio::test]
async fn every_wire_format_fills_and_submits_the_form() {
    let e = env().await;
    let formats_all = [
        "computer_20250124",
        "computer_20251124",
        "computer_toolset_20260801",
        "computer_use_preview",
        "computer",
        "functions",
    ];
    let only = std::env::var("AGENT_FORMATS").ok();
    let formats: Vec<&str> = formats_all
        .iter()
        .copied()
        .filter(|f| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|x| x == *f))
        })
        .collect();
    for (i, generation) in formats.iter().enumerate() {
        e.open_form().await;
        let field = e.declared_center("name").await;
        let button = e.declared_center("go").await;
        let pid = e.profile(generation, json!({})).await;
        let name = format!("Ada {i}");
        e.fake.script(json!([
            {"calls": [{"action": "screenshot"}], "thinking": true},
            {"calls": [{"action": "left_click", "coordinate": field},
                       {"action": "type", "text": name}]},
            {"calls": [{"action": "left_click", "coordinate": button}]},
            {"text": "I filled in the name and pressed Send."}
        ]));
        let mut ws = e.ws().await;
        let before = e.fake.requests().len();
        let (s, v) = e
            .chat("Please fill in the form with my name and send it.", true)
            .await;
        assert_eq!(s, 200, "{generation}: {v}");
        assert_eq!(v["turn"]["outcome"], "end_turn", "{generation}: {v}");
        assert_eq!(v["turn"]["requests"], 4, "{generation}: {v}");
        assert!(v["turn"]["usage"]["input_tokens"].as_u64() > Some(0), "{v}");
        let evs = turn_events(&mut ws).await;
        let title = e.eval("document.title").await;
        if title != json!(format!("Submitted: {name}")) {
            let (_, log) = e
                .call(Method::GET, &e.path("/actions?limit=1000"), None)
                .await;
            let kinds: Vec<String> = evs
                .iter()
                .map(|v| format!("{} {}", v["kind"], v["data"]))
                .collect();
            let page = e
                .eval("JSON.stringify({clicks: window.clicks, value: document.getElementById('name').value, active: document.activeElement && document.activeElement.id, url: location.href})")
                .await;
            panic!("{generation}: title {title}; page {page}; events {kinds:#?}; log {log}");
        }

        // The events show every step, each with a thumbnail reference (not the image).
        let steps: Vec<&Value> = evs.iter().filter(|v| v["kind"] == "agent.step").collect();
        let want_steps = if *generation == "computer" { 3 } else { 4 };
        assert_eq!(steps.len(), want_steps, "{generation}: {evs:?}");
        for st in &steps {
            assert_eq!(st["data"]["ok"], true, "{st}");
            assert!(st["data"]["thumbnail"].is_string(), "{st}");
            assert!(
                !st.to_string().contains(&name),
                "typed text is not in events: {st}"
            );
        }
        let thumb = steps[0]["data"]["thumbnail"].as_str().expect("thumbnail");
        let r = e.srv.req(Method::GET, thumb, Some(&e.token), None).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"].to_str().expect("ct"),
            "image/jpeg"
        );
        assert!(evs.iter().any(|v| v["kind"] == "agent.request"));

        // The action log has the agent's actions, under its profile.
        let (s, log) = e
            .call(Method::GET, &e.path("/actions?limit=1000"), None)
            .await;
        assert_eq!(s, 200);
        let mine: Vec<&Value> = log["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .filter(|a| a["who"] == json!(format!("agent:{pid}")))
            .collect();
        // Click, type, click (a screenshot is not an action on the desktop).
        assert!(mine.len() >= 3, "{generation}: {mine:?}");
        assert!(mine.iter().all(|a| a["what"]["via"] == "agent"));

        // What the provider received was valid for its format.
        let v = e.fake.violations();
        assert!(v.is_empty(), "{generation}: {v:?}");
        let reqs = e.fake.requests();
        let first = &reqs[before];
        let beta = first["headers"]["anthropic-beta"].as_str().unwrap_or("");
        match *generation {
            "computer_20250124" => assert!(beta.contains("computer-use-2025-01-24"), "{first}"),
            "computer_20251124" => assert!(beta.contains("computer-use-2025-11-24"), "{first}"),
            "computer_toolset_20260801" => assert!(!beta.contains("computer-use"), "{first}"),
            _ => assert!(
                first["path"].as_str().unwrap_or("").contains("/v1/"),
                "{first}"
            ),
        }
        let (s, turns) = e.call(Method::GET, &e.path("/agent/turns"), None).await;
        assert_eq!(s, 200);
        assert_eq!(turns["turns"].as_array().map(Vec::len), Some(i + 1));
    }
    // The model's words are in the conversation.
    let (_, msgs) = e.call(Method::GET, &e.path("/messages"), None).await;
    assert!(msgs.to_string().contains("pressed Send"), "{msgs}");
}

#[tokio::test]
async fn faults_are_retried_and_failures_reach_the_chat_in_plain_words() {
    let e = env().await;
    e.open_form().await;
    // Four retries, as the reference loop configures its client.
    e.profile("computer_20251124", json!({"provider": {"max_retries": 4}}))
        .await;
    e.fake.script(json!([
        {"fault": "status", "status": 429, "retry_after_ms": 50},
        {"fault": "status", "status": 529},
        {"fault": "mid_stream_error"},
        {"calls": [{"action": "screenshot"}]},
        {"fault": "malformed"},
        {"fault": "pause_turn"},
        {"text": "Done after a few hiccups."}
    ]));
    let (s, v) = e.chat("Look at the screen.", true).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["turn"]["outcome"], "end_turn", "{v}");
    let v = e.fake.violations();
    assert!(v.is_empty(), "{v:?}");

    // A refusal and a non-retryable error end the turn and say so in the chat.
    e.fake.script(json!([{"fault": "refusal"}]));
    let (_, v) = e.chat("Do something odd.", true).await;
    assert_eq!(v["turn"]["outcome"], "refusal", "{v}");
    e.fake.script(json!([
        {"fault": "x_should_retry_false", "status": 500}
    ]));
    let (_, v) = e.chat("Try again.", true).await;
    assert_eq!(v["turn"]["outcome"], "error", "{v}");
    let err = v["turn"]["error"].as_str().expect("error text");
    assert!(err.contains("500"), "{err}");
    assert!(!err.contains(&e.fake.key), "no key in errors");
    let (_, msgs) = e.call(Method::GET, &e.path("/messages"), None).await;
    let chat = msgs.to_string();
    assert!(chat.contains("⚠"), "{chat}");
    assert!(!chat.contains(&e.fake.key));
    // The key is nowhere in the store file either.
    let db = std::fs::read(e.srv.dir.path().join(zigral_store::DB_FILE)).expect("db");
    assert!(
        !db.windows(e.fake.key.len())
            .any(|w| w == e.fake.key.as_bytes()),
        "the API key reached redb"
    );
}

#[tokio::test]
async fn stop_pause_and_resume_steer_a_running_turn() {
    let e = env().await;
    e.open_form().await;
    e.profile("computer_20251124", json!({})).await;
    // The model keeps asking for screenshots; the provider answers slowly.
    let mut steps = Vec::new();
    for _ in 0..8 {
        steps.push(json!({"calls": [{"action": "wait", "duration": 0.2}]}));
    }
    steps.push(json!({"text": "finished"}));
    e.fake.script(Value::Array(steps));
    let (s, v) = e.chat("Keep watching.", false).await;
    assert_eq!(s, 202, "{v}");
    // A second message while it works: 409.
    let (s, v) = e.chat("And another thing.", false).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"], "agent_busy");
    let (s, v) = e.call(Method::POST, &e.path("/agent/pause"), None).await;
    assert_eq!(s, 200, "{v}");
    let paused = e.wait_state("paused").await;
    let steps_then = paused["status"]["steps"].as_u64().expect("steps");
    let (s, _) = e.call(Method::POST, &e.path("/agent/resume"), None).await;
    assert_eq!(s, 200);
    let (s, _) = e.call(Method::POST, &e.path("/agent/stop"), None).await;
    assert_eq!(s, 200);
    let idle = e.wait_state("idle").await;
    assert_eq!(idle["status"]["last_outcome"], "stopped", "{idle}");
    assert!(idle["status"]["steps"].as_u64() >= Some(steps_then));
    let (s, v) = e.call(Method::POST, &e.path("/agent/stop"), None).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("agent_idle")));
    // The next turn works on a valid conversation (every call was answered).
    e.fake.script(json!([{"text": "hello again"}]));
    let (_, v) = e.chat("Still there?", true).await;
    assert_eq!(v["turn"]["outcome"], "end_turn", "{v}");
    assert!(e.fake.violations().is_empty());
}

#[tokio::test]
async fn a_disallowed_url_typed_into_the_omnibox_does_not_leave_the_page() {
    let e = env().await;
    let evil = PageServer::start();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    evil.handler(move |_| {
        h.fetch_add(1, Ordering::SeqCst);
        Response::html("<title>Elsewhere</title>")
    });
    e.open_form().await;
    e.profile(
        "computer_20251124",
        json!({"allowed_domains": ["127.0.0.1"]}),
    )
    .await;
    // `localhost` is another host name than 127.0.0.1, so the allowlist refuses it.
    let url = format!("http://localhost:{}/elsewhere", evil.port);
    e.fake.script(json!([
        {"calls": [{"action": "key", "text": "ctrl+l"}]},
        {"calls": [{"action": "type", "text": format!("{url}\n")}]},
        {"calls": [{"action": "wait", "duration": 1}]},
        {"text": "I tried."}
    ]));
    let (s, v) = e.chat("Go to the other site.", true).await;
    assert_eq!(s, 200, "{v}");
    let here = e.browser().await.current().await.expect("current");
    assert!(
        here.url.starts_with(&e.pages.url("/form")),
        "the tab left the allowed page: {}",
        here.url
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the disallowed host got a request"
    );
}

#[tokio::test]
async fn the_agent_waits_while_a_person_holds_control_and_resumes_on_release() {
    let e = env().await;
    e.open_form().await;
    let pid = e.profile("computer_20251124", json!({})).await;
    let (s, v) = e
        .call(
            Method::POST,
            &e.path("/control"),
            Some(json!({"timeout_secs": 600})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let field = e.declared_center("name").await;
    e.fake.script(json!([
        {"calls": [{"action": "left_click", "coordinate": field}]},
        {"text": "clicked"}
    ]));
    let (s, v) = e.chat("Click the field.", false).await;
    assert_eq!(s, 202, "{v}");
    let waiting = e.wait_state("waiting").await;
    assert!(
        waiting["status"]["waiting_for"]
            .as_str()
            .is_some_and(|w| w.contains("has control")),
        "{waiting}"
    );
    // Nothing the agent does reaches the desktop while the person holds it.
    let (_, log) = e.call(Method::GET, &e.path("/actions"), None).await;
    assert!(
        !log.to_string().contains(&format!("agent:{pid}")),
        "the agent acted during the lease: {log}"
    );
    assert!(
        e.fake.requests().is_empty(),
        "no request before the lease ends"
    );
    let (s, _) = e.call(Method::DELETE, &e.path("/control"), None).await;
    assert_eq!(s, 204);
    let idle = e.wait_state("idle").await;
    assert_eq!(idle["status"]["last_outcome"], "end_turn", "{idle}");
    let (_, log) = e.call(Method::GET, &e.path("/actions"), None).await;
    assert!(log.to_string().contains(&format!("agent:{pid}")), "{log}");
}
