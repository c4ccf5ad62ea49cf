//! The human control lease through the real HTTP API of a port-0 control plane driving a real
//! Xvfb: a login takes control of a session; API tokens (REST, both adapters, MCP) and other
//! logins are refused with 409 `control_held` while reads keep working; the holder drives;
//! view tokens follow the lease; release, expiry (by the state's clock) and an admin's force
//! end it, with events, audit entries and the proxy's control file following.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use zigral_control::control_lease::control_id;
use zigral_tests::Xvfb;
use zigral_token::{ControlFiles, Role};

use common::Ws;

struct Env {
    _x: Xvfb,
    srv: common::Server,
    admin: String,
    /// Two logins of alice's (two browsers) and one of her API tokens.
    login_a: String,
    login_b: String,
    api: String,
    sid: String,
}

async fn env() -> Env {
    let x = Xvfb::start(1024, 768);
    let display = x.display;
    let srv = common::start(move |c| c.display_base = display).await;
    let admin = srv.admin().await;
    let login_a = srv.user(&admin, "alice").await;
    let login_b = srv.login("alice", "alice-password").await;
    let (s, v) = srv
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&login_a),
            Some(json!({"name": "agent", "scopes": ["read", "write", "control"]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let api = v["token"].as_str().expect("token").to_owned();
    let sid = srv.session(&login_a, None).await;
    Env {
        _x: x,
        srv,
        admin,
        login_a,
        login_b,
        api,
        sid,
    }
}

impl Env {
    fn path(&self, rest: &str) -> String {
        format!("/api/v1/sessions/{}{rest}", self.sid)
    }

    async fn call(&self, m: Method, rest: &str, who: &str, body: Option<Value>) -> (u16, Value) {
        self.srv.call(m, &self.path(rest), Some(who), body).await
    }

    /// A native mouse move through REST.
    async fn native(&self, who: &str, x: u32) -> (u16, Value) {
        self.call(
            Method::POST,
            "/actions",
            who,
            Some(json!({"action": "mouse_move", "x": x, "y": 100})),
        )
        .await
    }

    async fn take(&self, who: &str, body: Option<Value>, force: bool) -> (u16, Value) {
        let q = if force {
            "/control?force=true"
        } else {
            "/control"
        };
        self.call(Method::POST, q, who, body).await
    }

    async fn view_token(&self, who: &str) -> (String, zigral_token::Claims) {
        let (s, v) = self
            .call(
                Method::POST,
                "/view-token",
                who,
                Some(json!({"role": "control"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let t = v["token"].as_str().expect("token").to_owned();
        let claims = self.srv.state.signing_key().verify(&t).expect("verify");
        assert_eq!(v["role"], claims.role.to_string());
        (t, claims)
    }

    async fn audit_actions(&self) -> Vec<String> {
        let (s, v) = self
            .srv
            .call(
                Method::GET,
                "/api/v1/admin/audit?limit=1000",
                Some(&self.admin),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v.as_array()
            .expect("list")
            .iter()
            .filter(|a| a["target"] == self.sid.as_str())
            .map(|a| a["action"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn control_file(&self) -> Option<String> {
        ControlFiles::in_state_dir(self.srv.dir.path())
            .read(0)
            .expect("control file")
    }
}

fn assert_held(status: u16, v: &Value, what: &str) {
    assert_eq!(status, 409, "{what}: {v}");
    assert_eq!(v["error"], "control_held", "{what}: {v}");
    let m = v["message"].as_str().unwrap_or_default();
    assert!(
        m.starts_with("alice has control of this session since 20")
            && m.ends_with("actions resume when they release it"),
        "{what}: {m}"
    );
}

async fn events(srv: &common::Server, token: &str) -> Ws {
    let mut ws = srv.events(token).await;
    assert_eq!(next_control(&mut ws, true).await["kind"], "hello");
    ws
}

/// The next `session.control` event (or `hello` with `hello`).
async fn next_control(ws: &mut Ws, hello: bool) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("event within 10 s")
            .expect("stream open")
            .expect("frame");
        if let tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).expect("json");
            if v["kind"] == "session.control" || (hello && v["kind"] == "hello") {
                return v;
            }
        }
    }
}

/// A minimal MCP client over streamable HTTP (initialize, then tool calls), with an API token
/// and the session header.
struct Mcp<'a> {
    srv: &'a common::Server,
    token: &'a str,
    sid: &'a str,
    session: Option<String>,
    next: u64,
}

impl Mcp<'_> {
    async fn post(&mut self, msg: Value) -> (u16, Value) {
        let mut r = self
            .srv
            .http
            .post(self.srv.url("/mcp"))
            .bearer_auth(self.token)
            .header("x-zigral-session", self.sid)
            .header("accept", "application/json, text/event-stream")
            .json(&msg);
        if let Some(s) = &self.session {
            r = r.header("mcp-session-id", s);
        }
        let resp = r.send().await.expect("send");
        let status = resp.status().as_u16();
        if let Some(s) = resp.headers().get("mcp-session-id") {
            self.session = Some(s.to_str().expect("ascii").to_owned());
        }
        let text = resp.text().await.expect("body");
        // SSE (data: lines) or plain JSON.
        let body = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id").is_some() || v.get("error").is_some())
            .or_else(|| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        (status, body)
    }

    async fn request(&mut self, method: &str, params: Value) -> (u16, Value) {
        self.next += 1;
        let id = self.next;
        self.post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await
    }

    async fn init(&mut self) {
        let (s, v) = self
            .request(
                "initialize",
                json!({"protocolVersion": "2025-03-26", "capabilities": {},
                       "clientInfo": {"name": "test", "version": "1"}}),
            )
            .await;
        assert_eq!(s, 200, "initialize: {v}");
        assert!(self.session.is_some(), "no MCP session id");
        let (s, _) = self
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(s, 202, "initialized notification");
    }

    async fn tool(&mut self, name: &str, args: Value) -> (u16, Value) {
        self.request("tools/call", json!({"name": name, "arguments": args}))
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_holds_control_and_every_other_caller_is_refused_until_release() {
    let e = env().await;
    let mut ev = events(&e.srv, &e.login_a).await;
    let mut mcp = Mcp {
        srv: &e.srv,
        token: &e.api,
        sid: &e.sid,
        session: None,
        next: 0,
    };
    mcp.init().await;

    // Nobody holds it: the agent's token drives.
    let (s, v) = e.native(&e.api, 10).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = e.call(Method::GET, "/control", &e.api, None).await;
    assert_eq!((s, &v["held"]), (200, &json!(false)), "{v}");
    assert_eq!(e.control_file(), None);
    // An API token cannot take control, even with the control scope.
    let (s, v) = e.take(&e.api, None, false).await;
    assert_eq!(s, 403, "{v}");

    // Login A takes control.
    let (s, v) = e
        .take(&e.login_a, Some(json!({"timeout_secs": 600})), false)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["held"], &v["yours"], &v["change"]),
        (&json!(true), &json!(true), &json!("taken"))
    );
    let holder = v["holder"].clone();
    assert_eq!(holder["user_name"], "alice");
    let login_id = holder["login_id"].as_str().expect("login id").to_owned();
    assert_eq!(
        holder["expires_ms"].as_u64().expect("expiry")
            - holder["since_ms"].as_u64().expect("since"),
        600_000
    );
    let taken = next_control(&mut ev, false).await;
    assert_eq!(taken["session_id"], e.sid.as_str());
    assert_eq!(taken["data"]["change"], "taken");
    assert_eq!(taken["data"]["holder"]["user_name"], "alice");
    assert_eq!(taken["data"]["expires_ms"], holder["expires_ms"]);
    // The proxy's signal names the holding login.
    assert_eq!(e.control_file(), Some(control_id(&login_id)));

    // Every other caller's actions are refused, through every door.
    let (s, v) = e.native(&e.api, 20).await;
    assert_held(s, &v, "REST native, API token of the same user");
    let (s, v) = e
        .call(
            Method::POST,
            "/actions/anthropic",
            &e.api,
            Some(json!({"action": "mouse_move", "coordinate": [5, 5]})),
        )
        .await;
    assert_held(s, &v, "Anthropic adapter");
    let (s, v) = e
        .call(
            Method::POST,
            "/actions/openai",
            &e.api,
            Some(json!({"type": "move", "x": 5, "y": 5})),
        )
        .await;
    assert_held(s, &v, "OpenAI adapter");
    let (s, v) = mcp.tool("mouse_move", json!({"x": 5, "y": 5})).await;
    assert_held(s, &v, "MCP mouse_move");
    let (s, v) = mcp
        .tool("batch", json!({"actions": [{"action": "screenshot"}, {"action": "left_click", "x": 1, "y": 1}]}))
        .await;
    assert_held(s, &v, "MCP batch with a click");
    let (s, v) = e.native(&e.login_b, 30).await;
    assert_held(s, &v, "another login");
    let (s, v) = e.take(&e.login_b, None, false).await;
    assert_held(s, &v, "another login taking control");
    let (s, v) = e.take(&e.admin, None, false).await;
    assert_held(s, &v, "an admin without force");

    // Reads still work: screenshot (REST and MCP), the action log, messages, the holder.
    let r = e
        .srv
        .req(Method::GET, &e.path("/screenshot"), Some(&e.api), None)
        .await;
    assert_eq!(r.status(), 200);
    let (s, v) = mcp.tool("screenshot", json!({})).await;
    assert_eq!(s, 200, "MCP screenshot while held: {v}");
    assert_ne!(v["result"]["isError"], true, "{v}");
    let (s, _) = e.call(Method::GET, "/actions", &e.api, None).await;
    assert_eq!(s, 200);
    let (s, _) = e.call(Method::GET, "/messages", &e.api, None).await;
    assert_eq!(s, 200);
    let (s, v) = e.call(Method::GET, "/control", &e.api, None).await;
    assert_eq!(s, 200);
    assert_eq!((&v["held"], &v["yours"]), (&json!(true), &json!(false)));
    assert_eq!(v["holder"]["login_id"], login_id.as_str());

    // The holder drives, and refreshes by taking again.
    let (s, v) = e.native(&e.login_a, 300).await;
    assert_eq!(s, 200, "the holder's own action: {v}");
    let (s, v) = e.take(&e.login_a, None, false).await;
    assert_eq!((s, &v["change"]), (200, &json!("refreshed")), "{v}");
    assert_eq!(v["holder"]["since_ms"], holder["since_ms"], "since is kept");
    assert_eq!(
        next_control(&mut ev, false).await["data"]["change"],
        "refreshed"
    );

    // View tokens minted now: control only for the holder's login.
    let (_, c) = e.view_token(&e.login_a).await;
    assert_eq!(c.role, Role::Control);
    assert_eq!(c.control, Some(control_id(&login_id)));
    let (_, c) = e.view_token(&e.login_b).await;
    assert_eq!(c.role, Role::View, "another login gets a view token");
    let (_, c) = e.view_token(&e.api).await;
    assert_eq!(c.role, Role::View, "the agent's token gets a view token");

    // Another login cannot release it; the holder can.
    let (s, v) = e.call(Method::DELETE, "/control", &e.login_b, None).await;
    assert_held(s, &v, "another login releasing");
    let (s, v) = e.call(Method::DELETE, "/control", &e.login_a, None).await;
    assert_eq!(s, 204, "{v}");
    let released = next_control(&mut ev, false).await;
    assert_eq!(released["data"]["change"], "released");
    assert_eq!(released["data"]["holder"], Value::Null);
    assert_eq!(
        released["data"]["previous"][0]["login_id"],
        login_id.as_str()
    );
    assert_eq!(e.control_file(), None);

    // Everyone drives again.
    let (s, v) = e.native(&e.api, 40).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = mcp.tool("mouse_move", json!({"x": 6, "y": 6})).await;
    assert_eq!(s, 200, "{v}");
    assert_ne!(v["result"]["isError"], true, "{v}");
    let (_, c) = e.view_token(&e.login_b).await;
    assert_eq!(c.role, Role::Control);

    // An admin forces it away from a holder (not allowed to non-admins).
    let (s, _) = e.take(&e.login_a, None, false).await;
    assert_eq!(s, 200);
    assert_eq!(
        next_control(&mut ev, false).await["data"]["change"],
        "taken"
    );
    let (s, v) = e.take(&e.login_b, None, true).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = e.take(&e.admin, None, true).await;
    assert_eq!((s, &v["change"]), (200, &json!("forced")), "{v}");
    let forced = next_control(&mut ev, false).await;
    assert_eq!(forced["data"]["change"], "forced");
    assert_eq!(forced["data"]["holder"]["user_name"], "admin");
    assert_eq!(forced["data"]["previous"][0]["user_name"], "alice");
    let (s, v) = e.native(&e.login_a, 50).await;
    assert_eq!(s, 409, "the ousted holder is refused now: {v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("admin has control"),
        "{v}"
    );
    let (s, _) = e.call(Method::DELETE, "/control", &e.admin, None).await;
    assert_eq!(s, 204);

    let audit = e.audit_actions().await;
    for want in [
        "session.control.taken",
        "session.control.refreshed",
        "session.control.released",
        "session.control.forced",
    ] {
        assert!(audit.iter().any(|a| a == want), "{want} not in {audit:?}");
    }
}

#[test]
fn the_openapi_document_shows_the_refusal_on_every_action_door() {
    let doc = serde_json::to_value(zigral_control::openapi()).expect("json");
    for path in [
        "/api/v1/sessions/{id}/actions",
        "/api/v1/sessions/{id}/actions/anthropic",
        "/api/v1/sessions/{id}/actions/openai",
        "/api/v1/sessions/{id}/checkpoints/{cid}/restore",
        "/api/v1/sessions/{id}/control",
    ] {
        let r = &doc["paths"][path]["post"]["responses"]["409"];
        assert!(r.is_object(), "{path}: no 409 documented");
    }
    assert!(
        doc["paths"]["/api/v1/sessions/{id}/control"]["delete"]["responses"]["409"].is_object()
    );
    assert!(doc["paths"]["/api/v1/sessions/{id}/control"]["get"].is_object());
    // A screenshot is not refused for a lease, only while a typed secret's field has focus.
    let shot = &doc["paths"]["/api/v1/sessions/{id}/screenshot"]["get"]["responses"]["409"];
    assert!(
        shot["description"]
            .as_str()
            .unwrap_or_default()
            .contains("screenshot_withheld"),
        "{shot}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_ends_by_itself_at_its_expiry() {
    let e = env().await;
    let mut ev = events(&e.srv, &e.login_a).await;
    let (s, v) = e
        .take(&e.login_a, Some(json!({"timeout_secs": 30})), false)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        next_control(&mut ev, false).await["data"]["change"],
        "taken"
    );
    for bad in [
        json!({"timeout_secs": 0}),
        json!({"timeout_secs": 3601}),
        json!({"x": 1}),
    ] {
        let (s, v) = e.take(&e.login_a, Some(bad.clone()), false).await;
        assert_eq!(s, 422, "{bad}: {v}");
    }
    let (s, v) = e.native(&e.api, 10).await;
    assert_held(s, &v, "before expiry");
    assert!(e.control_file().is_some());

    // 29 s later it still holds; at 30 s it is gone, announced by the sweeper.
    e.srv.clock.advance(29);
    let (s, v) = e.native(&e.api, 11).await;
    assert_held(s, &v, "a second before expiry");
    e.srv.clock.advance(1);
    let expired = next_control(&mut ev, false).await;
    assert_eq!(expired["data"]["change"], "expired");
    assert_eq!(expired["data"]["previous"][0]["user_name"], "alice");
    assert_eq!(e.control_file(), None, "the proxy's signal is gone");
    let (s, v) = e.native(&e.api, 12).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        e.audit_actions()
            .await
            .iter()
            .any(|a| a == "session.control.expired")
    );

    // The lease covers the desktop: a sibling session on it is refused too, and the holder
    // can release it from there.
    let sibling = e.srv.session(&e.login_a, None).await;
    let on_sibling = |rest: &str| format!("/api/v1/sessions/{sibling}{rest}");
    let (s, _) = e.take(&e.login_a, None, false).await;
    assert_eq!(s, 200);
    assert_eq!(
        next_control(&mut ev, false).await["data"]["change"],
        "taken"
    );
    let (s, v) = e
        .srv
        .call(
            Method::POST,
            &on_sibling("/actions"),
            Some(&e.api),
            Some(json!({"action": "mouse_move", "x": 1, "y": 1})),
        )
        .await;
    assert_held(s, &v, "a sibling session on the same desktop");
    let (s, v) = e
        .srv
        .call(
            Method::POST,
            &on_sibling("/control"),
            Some(&e.login_b),
            None,
        )
        .await;
    assert_held(s, &v, "another login on the sibling session");
    let (s, v) = e
        .srv
        .call(Method::GET, &on_sibling("/control"), Some(&e.api), None)
        .await;
    assert_eq!((s, &v["holder"]["session_id"]), (200, &json!(e.sid)), "{v}");
    let (s, _) = e
        .srv
        .call(
            Method::DELETE,
            &on_sibling("/control"),
            Some(&e.login_a),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        next_control(&mut ev, false).await["data"]["change"],
        "released"
    );
    assert_eq!(e.control_file(), None);

    // A deleted session's lease ends with it.
    let (s, _) = e.take(&e.login_a, None, false).await;
    assert_eq!(s, 200);
    assert_eq!(
        next_control(&mut ev, false).await["data"]["change"],
        "taken"
    );
    let (s, _) = e
        .srv
        .call(Method::DELETE, &e.path(""), Some(&e.login_a), None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        next_control(&mut ev, false).await["data"]["change"],
        "released"
    );
    assert_eq!(e.control_file(), None);
}
