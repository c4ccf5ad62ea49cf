//! Human in the loop end to end: a real Xvfb and Chromium, a local site with a login form, a
//! 2FA page and a "Send" button, a port-0 control plane and the fake provider (Anthropic
//! `computer_20251124`). The scripted model logs in with a stored credential it never sees,
//! asks for a 2FA code that a person answers through the API, sends a message after a person
//! approves the gated click; feedback prompts arrive at exactly the scheduled steps; an undo
//! and a reject roll the browser back. Afterwards neither the password, the username nor the
//! code is in the redb file, the logs, the events, the action log or any provider request, and
//! no screenshot sent to the provider shows the colour the page paints while a filled secret
//! field has focus.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use zigral_browser::testkit::Response;
use zigral_tests::fake_llm::FakeLlm;

const USERNAME: &str = "ada.lovelace@example.org";
const PASSWORD: &str = "Pw-9Zq!hunter2-engine";
const CODE: &str = "493817";
const COOKIE: &str = "zz-cookie-7f3a91";

/// Layout shared by every page: field A, field B, button GO (absolute CSS pixels), so the
/// scripted coordinates hold on each page. A filled secret field with focus paints the page
/// magenta: no screenshot sent to the model may show it.
const STYLE: &str = "<style>body{margin:0;font:18px sans-serif;background:#fff}\
#a{position:absolute;left:100px;top:100px;width:400px;height:40px;font-size:18px}\
#b{position:absolute;left:100px;top:200px;width:400px;height:40px;font-size:18px}\
#go{position:absolute;left:100px;top:300px;width:200px;height:50px}</style>";

const PAINT: &str = "<script>window.clicks=0;\
document.addEventListener('click',()=>window.clicks++,true);\
function paint(){const a=document.activeElement;\
const secret=a&&a.dataset&&a.dataset.secret&&a.value;\
document.body.style.background=secret?'#ff00ff':'#ffffff';}\
for(const ev of ['focusin','focusout','input'])document.addEventListener(ev,()=>setTimeout(paint,0),true);\
</script>";

fn login_page() -> String {
    format!(
        r#"<!doctype html><html><head><title>Log in</title>{STYLE}</head><body>
<form id="f" autocomplete="off">
<input id="a" aria-label="Email" data-secret="1" autocomplete="off">
<input id="b" type="password" aria-label="Password" data-secret="1" autocomplete="off">
<button id="go" type="submit">Log in</button></form>{PAINT}
<script>document.getElementById('f').addEventListener('submit',e=>{{e.preventDefault();
const u=document.getElementById('a').value,p=document.getElementById('b').value;
if(u==={USERNAME:?}&&p==={PASSWORD:?}){{document.cookie='sess={COOKIE}; path=/';location.href='/2fa';}}
else document.title='Wrong password';}});</script></body></html>"#
    )
}

fn twofa_page() -> String {
    format!(
        r#"<!doctype html><html><head><title>Verify</title>{STYLE}</head><body>
<input id="a" aria-label="Code" data-secret="1" autocomplete="off" autofocus>
<button id="go">Verify</button>{PAINT}
<script>document.getElementById('go').addEventListener('click',()=>{{
if(document.getElementById('a').value==={CODE:?}){{document.cookie='twofa=ok; path=/';location.href='/compose';}}
else document.title='Wrong code';}});</script></body></html>"#
    )
}

fn compose_page() -> String {
    format!(
        r#"<!doctype html><html><head><title>Compose</title>{STYLE}</head><body>
<input id="a" aria-label="Message" autocomplete="off" autofocus>
<button id="go">Send</button>{PAINT}
<script>const m=document.getElementById('a');
m.addEventListener('input',()=>localStorage.setItem('draft',m.value));
document.getElementById('go').addEventListener('click',()=>{{
document.cookie='sent=1; path=/';document.title='Sent';}});</script></body></html>"#
    )
}

/// Everything the in-process control plane logs, at every level.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

/// Every image in a provider request body (Anthropic `image` blocks), decoded.
fn images(v: &Value, out: &mut Vec<Vec<u8>>) {
    match v {
        Value::Object(o) => {
            if o.get("type").and_then(Value::as_str) == Some("image")
                && let Some(d) = o["source"]["data"].as_str()
            {
                out.push(
                    base64::engine::general_purpose::STANDARD
                        .decode(d)
                        .expect("image base64"),
                );
            }
            for x in o.values() {
                images(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| images(x, out)),
        _ => {}
    }
}

/// Pixels of a PNG that are (nearly) magenta.
fn magenta_pixels(png_bytes: &[u8]) -> usize {
    let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut r = dec.read_info().expect("png header");
    let mut buf = vec![0; r.output_buffer_size().expect("size")];
    let info = r.next_frame(&mut buf).expect("png frame");
    let ch = info.color_type.samples();
    if ch < 3 {
        return 0;
    }
    buf[..info.buffer_size()]
        .chunks(ch)
        .filter(|p| p[0] > 230 && p[1] < 30 && p[2] > 230)
        .count()
}

fn count(hay: &[u8], needle: &str) -> usize {
    let n = needle.as_bytes();
    hay.windows(n.len()).filter(|w| *w == n).count()
}

/// Opens `url` in the session's browser and makes sure the page takes input (Chrome drops
/// input to a fresh same-origin page until it has painted: click until a click counts).
async fn open(srv: &common::Server, token: &str, sid: &str, url: &str) {
    let actions = format!("/api/v1/sessions/{sid}/actions");
    let (s, v) = srv
        .call(
            Method::POST,
            &actions,
            Some(token),
            Some(json!({"action": "navigate", "url": url})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let b = srv.browser().await;
    let start = Instant::now();
    while b.evaluate("window.clicks").await.expect("eval").as_u64() == Some(0) {
        let click = json!({"action": "left_click", "x": 900, "y": 700});
        let (s, _) = srv
            .call(Method::POST, &actions, Some(token), Some(click))
            .await;
        assert_eq!(s, 200);
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no click landed on {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn login_2fa_gated_send_feedback_undo_and_no_secret_leaks() {
    let logs = LogBuf::default();
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(logs.clone())
        .with_ansi(false)
        .try_init();

    let d = common::desktop(1440, 900, |_| {}).await;
    let (srv, token, pages) = (&d.srv, d.token.clone(), &d.pages);
    pages.page("/login", Response::html(login_page()));
    pages.page("/2fa", Response::html(twofa_page()));
    pages.page("/compose", Response::html(compose_page()));
    let fake = FakeLlm::start("fake-key-for-tests");
    let sid = srv.session(&token, None).await;
    let call = |m: Method, p: String, b: Option<Value>| {
        let token = token.clone();
        async move { srv.call(m, &p, Some(&token), b).await }
    };
    let path = |rest: &str| format!("/api/v1/sessions/{sid}{rest}");

    // Every event of the run.
    let mut ws = srv.events(&token).await;
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = events.clone();
    let collector = tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                sink.lock().expect("events").push(t.to_string());
            }
        }
    });

    // The person stores the credentials (the agent only ever sees the names).
    let (s, v) = call(
        Method::POST,
        "/api/v1/credentials".into(),
        Some(
            json!({"name": "site", "username": USERNAME, "password": PASSWORD,
                    "domains": ["127.0.0.1"]}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert!(!v.to_string().contains(PASSWORD), "{v}");
    let (s, v) = call(
        Method::POST,
        "/api/v1/credentials".into(),
        Some(
            json!({"name": "elsewhere", "username": "x", "password": "elsewhere-pass-1",
                    "domains": ["example.com"]}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(Method::GET, "/api/v1/credentials".into(), None).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    assert!(!v.to_string().contains(PASSWORD) && !v.to_string().contains(USERNAME));

    // A profile with the risky pattern "the Send button".
    let (s, v) = call(
        Method::POST,
        "/api/v1/agents".into(),
        Some(json!({
            "name": "messenger",
            "system_prompt": "Log in and send the message.",
            "provider": {"generation": "computer_20251124", "model": "fake-model",
                         "base_url": fake.base_url(), "max_tokens": 2048, "timeout_secs": 30},
            "max_steps": 30,
            "api_key": fake.key,
            "hitl": {"approve_risky": true, "feedback": true, "checkpoint_every": 5},
            "risky_patterns": ["(?i)button \"send\""],
        })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let pid = v["id"].as_str().expect("id").to_owned();
    let (s, v) = call(Method::PUT, path("/agent"), Some(json!({"profile": pid}))).await;
    assert_eq!(s, 200, "{v}");

    let browser = srv.browser().await;
    let eval = |e: &'static str| {
        let b = browser.clone();
        async move { b.evaluate(e).await.expect("eval") }
    };
    open(srv, &token, &sid, &pages.url("/login")).await;
    // Declared (1280×800) coordinates of the shared layout.
    let f = 1280.0 / 1440.0;
    let at = |id: &str| {
        let b = browser.clone();
        let id = id.to_owned();
        async move {
            let (x, y) = common::screen_center_f64(&b, &id).await;
            [(x * f).round() as i64, (y * f).round() as i64]
        }
    };
    let (a, b, go) = (at("a").await, at("b").await, at("go").await);

    fake.script(json!([
        {"calls": [{"action": "left_click", "coordinate": a}]},
        {"calls": [{"tool": "type_secret", "input": {"name": "site", "field": "username"}}]},
        {"calls": [{"action": "left_click", "coordinate": b}]},
        {"calls": [{"tool": "type_secret", "input": {"name": "site", "field": "password"}}]},
        {"calls": [{"action": "screenshot"}]},
        {"calls": [{"action": "key", "text": "Return"}]},
        {"calls": [{"action": "left_click", "coordinate": a}]},
        {"calls": [{"tool": "request_human_input",
                    "input": {"kind": "2fa", "prompt": "Enter the code we texted you"}}]},
        {"calls": [{"action": "left_click", "coordinate": go}]},
        {"calls": [{"action": "left_click", "coordinate": a}]},
        {"calls": [{"action": "type", "text": "Hello Ada"}]},
        {"calls": [{"action": "left_click", "coordinate": go}]},
        {"text": "Logged in and sent the message."}
    ]));
    let (s, v) = call(
        Method::POST,
        path("/chat"),
        Some(json!({"text": "Log in and send Ada a hello.", "wait": false})),
    )
    .await;
    assert_eq!(s, 202, "{v}");

    // The agent asks for the 2FA code; the person answers through the API.
    let deadline = Instant::now() + Duration::from_secs(90);
    let input = loop {
        let (s, v) = call(Method::GET, path("/input"), None).await;
        assert_eq!(s, 200, "{v}");
        if !v.is_null() {
            break v;
        }
        let (_, st) = call(Method::GET, path("/agent"), None).await;
        assert!(
            st["status"]["state"] != "idle" || Instant::now() < deadline - Duration::from_secs(85),
            "the turn ended before asking for the code: {st}"
        );
        assert!(Instant::now() < deadline, "no 2FA request: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(input["kind"], "2fa", "{input}");
    assert_eq!(input["host"], "127.0.0.1", "{input}");
    let (s, v) = call(
        Method::POST,
        path("/input"),
        Some(json!({"id": input["id"], "code": CODE})),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // The click on "Send" waits for a person's approval.
    let approval = loop {
        let (_, st) = call(Method::GET, path("/agent"), None).await;
        if !st["status"]["approval"].is_null() {
            break st["status"]["approval"].clone();
        }
        assert!(
            st["status"]["state"] != "idle",
            "the turn ended without asking to approve the send: {st}; title {}",
            eval("document.title").await
        );
        assert!(Instant::now() < deadline, "no approval asked: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(approval["kind"], "risky", "{approval}");
    assert!(
        approval["details"].to_string().contains("Send"),
        "matched on the button under the pointer: {approval}"
    );
    assert_eq!(
        eval("document.title").await,
        "Compose",
        "not sent before approval"
    );
    let (s, v) = call(
        Method::POST,
        path("/agent/approve"),
        Some(json!({"approve": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    loop {
        let (_, st) = call(Method::GET, path("/agent"), None).await;
        if st["status"]["state"] == "idle" && st["status"]["turns_finished"].as_u64() >= Some(1) {
            assert_eq!(st["status"]["last_outcome"], "end_turn", "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "the turn never ended: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(eval("document.title").await, "Sent");
    let cookies = eval("document.cookie").await.to_string();
    assert!(
        cookies.contains(COOKIE) && cookies.contains("twofa=ok") && cookies.contains("sent=1"),
        "{cookies}"
    );
    assert_eq!(eval("localStorage.getItem('draft')").await, "Hello Ada");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());

    // Feedback prompts at exactly the scheduled steps (1–5, then 10) of these 12.
    let (s, fb) = call(Method::GET, path("/feedback"), None).await;
    assert_eq!(s, 200, "{fb}");
    let steps: Vec<u64> = fb
        .as_array()
        .expect("feedback")
        .iter()
        .filter(|r| r["feedback"]["kind"] == "prompt")
        .map(|r| r["feedback"]["step"].as_u64().expect("step"))
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 10], "{fb}");
    let prompt_of = |n: u64| {
        fb.as_array()
            .expect("feedback")
            .iter()
            .find(|r| r["feedback"]["step"] == n)
            .map(|r| r["seq"].clone())
            .expect("prompt")
    };
    // Step 5's screenshot was taken while the password field had focus: no images kept.
    let five = fb
        .as_array()
        .expect("fb")
        .iter()
        .find(|r| r["feedback"]["step"] == 5)
        .expect("5");
    assert!(
        five["before_url"].is_null() && five["after_url"].is_null(),
        "{five}"
    );
    let one = fb
        .as_array()
        .expect("fb")
        .iter()
        .find(|r| r["feedback"]["step"] == 1)
        .expect("1");
    let shot = one["after_url"]
        .as_str()
        .expect("after screenshot of step 1");
    let r = srv.req(Method::GET, shot, Some(&token), None).await;
    assert_eq!(r.status(), 200);

    // Undo the last step (the approved send): the checkpoint before it comes back.
    let (s, v) = call(Method::POST, path("/undo"), Some(json!({"steps": 1}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["from_step"].as_u64(), v["to_step"].as_u64()),
        (Some(12), Some(12)),
        "{v}"
    );
    let cookies = eval("document.cookie").await.to_string();
    assert!(
        !cookies.contains("sent=1") && cookies.contains(COOKIE),
        "{cookies}"
    );
    assert_eq!(eval("localStorage.getItem('draft')").await, "Hello Ada");

    // Answers: approve, correct, and a reject of step 10 that rolls back before it.
    for (n, body) in [
        (1, json!({"verdict": "approve", "rating": 5})),
        (
            3,
            json!({"verdict": "correct", "correction": "Use the Tab key to move to the password field.", "rating": 3}),
        ),
        (
            10,
            json!({"verdict": "reject", "comment": "Do not write to Ada.", "rating": 1}),
        ),
    ] {
        let mut body = body;
        body["prompt"] = prompt_of(n);
        let (s, v) = call(Method::POST, path("/feedback"), Some(body)).await;
        assert_eq!(s, 200, "step {n}: {v}");
        assert_eq!(v["feedback"]["status"], "answered", "{v}");
        if n == 10 {
            assert_eq!(
                v["feedback"]["answer"]["rolled_back"]["from_step"], 10,
                "{v}"
            );
        }
    }
    assert!(
        eval("localStorage.getItem('draft')").await.is_null(),
        "rolled back before step 10"
    );
    let cookies = eval("document.cookie").await.to_string();
    assert!(
        cookies.contains(COOKIE) && cookies.contains("twofa=ok"),
        "{cookies}"
    );
    assert!(eval("location.pathname").await == "/compose");
    // Bad feedback changes nothing.
    for bad in [
        json!({"verdict": "approve", "prompt": prompt_of(2), "rating": 9}),
        json!({"verdict": "correct", "prompt": prompt_of(2)}),
        json!({"verdict": "approve", "step": 99}),
    ] {
        let (s, v) = call(Method::POST, path("/feedback"), Some(bad)).await;
        assert!(s == 422 || s == 404, "{s} {v}");
    }
    let (s, v) = call(Method::POST, path("/undo"), Some(json!({"steps": 0}))).await;
    assert_eq!(s, 422, "{v}");

    // Preference data: one JSONL line per answer, per session and per profile.
    let r = srv
        .req(Method::GET, &path("/feedback/export"), Some(&token), None)
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("jsonl");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[1]["verdict"], "correct");
    assert_eq!(
        lines[1]["correction"],
        "Use the Tab key to move to the password field."
    );
    assert_eq!(
        lines[2]["context"]["instruction"],
        "Log in and send Ada a hello."
    );
    let r = srv
        .req(
            Method::GET,
            &format!("/api/v1/agents/{pid}/feedback/export"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.text().await.expect("jsonl").lines().count(), 3);

    // The model hears what people did before its next request.
    fake.script(json!([{"text": "Understood."}]));
    let before = fake.requests().len();
    let (s, v) = call(
        Method::POST,
        path("/chat"),
        // (A person pasting the password into the chat: neither stored nor sent.)
        Some(json!({"text": format!("What happened? My password is {PASSWORD}"), "wait": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, msgs) = call(Method::GET, path("/messages?limit=100"), None).await;
    assert!(
        msgs.to_string().contains("My password is <secret:site>"),
        "{msgs}"
    );
    let next = fake.requests()[before]["body"].to_string();
    assert!(next.contains("rejected your step 10"), "{next}");
    assert!(next.contains("Do not write to Ada."), "{next}");
    assert!(next.contains("Use the Tab key"), "{next}");

    // A credential offered to a host outside its domains is refused and not typed.
    call(
        Method::POST,
        path("/actions"),
        Some(json!({"action": "left_click", "x": 300, "y": 200})),
    )
    .await;
    let (x, y) = common::screen_center(&browser, "a").await;
    let (s, _) = call(
        Method::POST,
        path("/actions"),
        Some(json!({"action": "left_click", "x": x, "y": y})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = call(
        Method::POST,
        path("/type-secret"),
        Some(json!({"name": "elsewhere", "field": "password"})),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"], "domain_refused", "{v}");
    assert_eq!(eval("document.getElementById('a').value").await, "");

    // A takeover: the agent asks a person to do something; they take control of the desktop
    // and release it, and the agent goes on. Then a gated click nobody approves times out.
    let (s, v) = call(
        Method::POST,
        "/api/v1/agents".into(),
        Some(json!({
            "name": "impatient",
            "system_prompt": "Send the message.",
            "provider": {"generation": "computer_20251124", "model": "fake-model",
                         "base_url": fake.base_url(), "max_tokens": 2048, "timeout_secs": 30},
            "max_steps": 30,
            "api_key": fake.key,
            "hitl": {"approve_risky": true, "feedback": false, "approval_timeout_secs": 10},
            "risky_patterns": ["(?i)button \"send\""],
        })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let pid2 = v["id"].as_str().expect("id").to_owned();
    let (s, v) = call(Method::PUT, path("/agent"), Some(json!({"profile": pid2}))).await;
    assert_eq!(s, 200, "{v}");
    // (Restored tabs are new tabs: the viewport may sit elsewhere on the screen.)
    let go_now = at("go").await;
    fake.script(json!([
        {"calls": [{"tool": "request_human_input",
                    "input": {"kind": "takeover", "prompt": "Please close the banner"}}]},
        {"calls": [{"action": "left_click", "coordinate": go_now}]},
    ]));
    let before = fake.requests().len();
    let (s, v) = call(
        Method::POST,
        path("/chat"),
        Some(json!({"text": "Send it.", "wait": false})),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = call(Method::GET, path("/input"), None).await;
        if v["kind"] == "takeover" {
            break;
        }
        assert!(Instant::now() < deadline, "no takeover request: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, v) = call(
        Method::POST,
        path("/control"),
        Some(json!({"timeout_secs": 60})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(Method::DELETE, path("/control"), None).await;
    assert!(s == 200 || s == 204, "{s} {v}");
    loop {
        let (_, st) = call(Method::GET, path("/agent"), None).await;
        if st["status"]["state"] == "idle" && st["status"]["last_outcome"] == "declined" {
            assert!(
                st["status"]["last_error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("no one answered within 10 s"),
                "{st}"
            );
            break;
        }
        assert!(
            st["status"]["state"] != "idle" || st["status"]["last_outcome"] == "end_turn",
            "{st}"
        );
        assert!(
            Instant::now() < deadline,
            "the unanswered approval never timed out: {st}; title {}; url {}; events {:#?}",
            eval("document.title").await,
            eval("location.href").await,
            events
                .lock()
                .expect("events")
                .iter()
                .filter(|e| e.contains("agent."))
                .rev()
                .take(12)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = serde_json::to_string(&fake.requests()[before..]).expect("requests");
    assert!(
        after.contains("took control of the desktop and released it"),
        "{after}"
    );
    assert_ne!(
        eval("document.title").await,
        "Sent",
        "the unapproved click never ran"
    );

    // An external agent types the username over REST: every capture of the desktop is
    // refused while that field has focus, and allowed (without the colour) once it has not.
    open(srv, &token, &sid, &pages.url("/login")).await;
    let (x, y) = common::screen_center(&browser, "a").await;
    let (s, _) = call(
        Method::POST,
        path("/actions"),
        Some(json!({"action": "left_click", "x": x, "y": y})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = call(
        Method::POST,
        path("/type-secret"),
        Some(json!({"name": "site", "field": "username"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["host"], "127.0.0.1", "{v}");
    let r = srv
        .req(Method::GET, &path("/screenshot"), Some(&token), None)
        .await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "screenshot_withheld", "{body}");
    let (s, v) = call(
        Method::POST,
        path("/actions"),
        Some(json!({"action": "screenshot"})),
    )
    .await;
    assert_eq!(
        v["results"][0]["error"]["error"], "screenshot_withheld",
        "{s} {v}"
    );
    let (s, v) = call(
        Method::POST,
        path("/actions"),
        Some(
            json!({"actions": [{"action": "key", "keys": "Tab"}], "screenshot": {"format": "png"}}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // Tab moves to the password field (empty): the secret field lost focus before the capture.
    assert!(v["withheld"].is_null(), "{v}");
    let png = base64::engine::general_purpose::STANDARD
        .decode(v["screenshot"]["data"].as_str().expect("screenshot"))
        .expect("b64");
    assert_eq!(magenta_pixels(&png), 0);
    let r = srv
        .req(
            Method::GET,
            &path("/screenshot?format=png"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);

    // Secret hygiene.
    collector.abort();
    let reqs = serde_json::to_string(&fake.requests()).expect("requests");
    let evs = events.lock().expect("events").join("\n");
    let (_, actions) = call(Method::GET, path("/actions?limit=1000"), None).await;
    let actions = actions.to_string();
    let (_, audit) = call(Method::GET, "/api/v1/admin/audit?limit=1000".into(), None).await;
    let audit = audit.to_string();
    let logs = String::from_utf8_lossy(&logs.0.lock().expect("log")).into_owned();
    assert!(!logs.is_empty(), "the control plane's logs were captured");
    let db = std::fs::read(srv.dir.path().join("zigral.redb")).expect("redb file");
    for secret in [PASSWORD, USERNAME, CODE, "elsewhere-pass-1"] {
        assert_eq!(count(&db, secret), 0, "{secret} in the redb file");
        for (what, hay) in [
            ("provider requests", &reqs),
            ("events", &evs),
            ("action log", &actions),
            ("audit", &audit),
            ("logs", &logs),
        ] {
            assert!(!hay.contains(secret), "{secret} in the {what}");
        }
    }
    assert_eq!(
        count(&db, COOKIE),
        0,
        "checkpoints (holding cookies) are sealed at rest"
    );
    assert!(actions.contains("type_secret"), "{actions}");
    assert!(
        reqs.contains("Screenshot withheld"),
        "the model got a note instead"
    );
    let mut shots = Vec::new();
    for r in fake.requests() {
        images(&r["body"], &mut shots);
    }
    assert!(
        shots.len() >= 8,
        "screenshots went to the model: {}",
        shots.len()
    );
    for (i, png) in shots.iter().enumerate() {
        assert_eq!(
            magenta_pixels(png),
            0,
            "screenshot {i} shows a focused secret field"
        );
    }
}
