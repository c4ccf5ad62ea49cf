//! End to end over HTTP against a real server on a port-0 listener with a temp redb store:
//! login (cookie + bearer), tokens and scopes, sessions, messages, context windows under
//! several budgets, summaries, view tokens, the events websocket, errors and limits.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sets_a_strict_http_only_cookie_and_returns_a_bearer_token() {
    let s = start(|_| {}).await;
    let r = s
        .req(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .expect("cookie")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("zigral_session=zgl_"), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "no TLS, so no Secure: {cookie}");
    let body: Value = r.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(body["user"]["username"], "admin");
    assert_eq!(body["user"]["is_admin"], true);
    assert!(body["user"].get("password_hash").is_none());
    // Same credential as cookie and as bearer.
    let cookie_pair = cookie.split(';').next().unwrap().to_owned();
    let me: Value = s
        .http
        .get(s.url("/api/v1/auth/me"))
        .header("cookie", &cookie_pair)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["kind"], "session_cookie");
    let (st, me) = s
        .call(Method::GET, "/api/v1/auth/me", Some(token), None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(me["kind"], "user");
    assert_eq!(me["scopes"], json!(["read", "write", "control", "admin"]));
    // The store holds no secret: neither the password nor the token appears in the file.
    let raw = std::fs::read(s.dir.path().join("zigral.redb")).unwrap();
    for secret in [ADMIN_PASSWORD.as_bytes(), token.as_bytes()] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret),
            "secret found in redb file"
        );
    }
    // Logout revokes the token for both cookie and bearer use.
    let (st, _) = s
        .call(Method::POST, "/api/v1/auth/logout", Some(token), None)
        .await;
    assert_eq!(st, 204);
    let (st, e) = s
        .call(Method::GET, "/api/v1/auth/me", Some(token), None)
        .await;
    assert_eq!(st, 401);
    assert_eq!(e["error"], "unauthorized");
    let r = s
        .http
        .get(s.url("/api/v1/auth/me"))
        .header("cookie", &cookie_pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_refused_then_rate_limited() {
    let s = start(|c| c.login_max_failures = 3).await;
    for _ in 0..3 {
        let (st, e) = s
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"username": "admin", "password": "wrong-password"})),
            )
            .await;
        assert_eq!(st, 401, "{e}");
        assert_eq!(e["message"], "invalid user name or password");
    }
    let r = s
        .req(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(
        r.status(),
        429,
        "even the right password waits out the window"
    );
    assert!(r.headers().get("retry-after").is_some());
    // Unknown users look exactly like wrong passwords.
    let (st, e) = s
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "nobody", "password": "whatever1"})),
        )
        .await;
    assert_eq!(
        (st, e["message"].as_str()),
        (401, Some("invalid user name or password"))
    );
    let (_, audit) = {
        // A fresh admin session is impossible while limited; read the audit via the store.
        let a = s.state.store().list_audit(None, 100).unwrap();
        (0, a)
    };
    assert!(
        audit
            .iter()
            .filter(|a| a.action == "auth.login_failed")
            .count()
            >= 4
    );
    assert!(
        audit
            .iter()
            .all(|a| !a.detail.to_string().contains("wrong-password")),
        "passwords never reach the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_have_scopes_and_can_be_revoked() {
    let s = start(|_| {}).await;
    let admin = s.admin().await;
    let alice = s.user(&admin, "alice").await;
    let (st, t) = s
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&alice),
            Some(json!({"name": "reader", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    let reader = t["token"].as_str().unwrap().to_owned();
    assert!(reader.starts_with("zgt_"));
    // A user cannot grant admin.
    let (st, _) = s
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&alice),
            Some(json!({"name": "x", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(st, 403);
    // Read works; writes are refused by scope.
    let sid = s.session(&alice, None).await;
    let (st, _) = s
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{sid}"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (st, e) = s
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(&reader),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, 403, "{e}");
    assert!(e["message"].as_str().unwrap().contains("write"));
    // Listing shows no secret.
    let (st, list) = s
        .call(Method::GET, "/api/v1/tokens", Some(&alice), None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("token").is_none());
    // Another user cannot revoke it; the owner can.
    let bob = s.user(&admin, "bob").await;
    let id = t["id"].as_str().unwrap();
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(st, 403);
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (st, e) = s
        .call(Method::GET, "/api/v1/sessions", Some(&reader), None)
        .await;
    assert_eq!(
        (st, e["message"].as_str()),
        (401, Some("invalid or revoked token"))
    );
    // Expiry.
    let (_, t) = s
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&alice),
            Some(json!({"name": "short", "scopes": ["read"], "expires_in_secs": 1})),
        )
        .await;
    let short = t["token"].as_str().unwrap().to_owned();
    let (st, _) = s
        .call(Method::GET, "/api/v1/sessions", Some(&short), None)
        .await;
    assert_eq!(st, 200);
    s.clock.advance(1);
    let (st, e) = s
        .call(Method::GET, "/api/v1/sessions", Some(&short), None)
        .await;
    assert_eq!((st, e["message"].as_str()), (401, Some("token expired")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_private_to_their_owner_and_visible_to_admins() {
    let s = start(|_| {}).await;
    let admin = s.admin().await;
    let alice = s.user(&admin, "alice").await;
    let bob = s.user(&admin, "bob").await;
    let a1 = s.session(&alice, Some("You are Alice's agent.")).await;
    let b1 = s.session(&bob, None).await;
    let (_, list) = s
        .call(Method::GET, "/api/v1/sessions", Some(&alice), None)
        .await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a1.as_str()]);
    let (_, list) = s
        .call(Method::GET, "/api/v1/sessions", Some(&admin), None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (st, e) = s
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{b1}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!((st, e["error"].as_str()), (403, Some("forbidden")));
    let (st, v) = s
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{a1}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["desktop"], 0);
    assert_eq!(v["system_prompt"], "You are Alice's agent.");
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/api/v1/sessions/{a1}"),
            Some(&alice),
            Some(json!({"title": "renamed", "state": "running"})),
        )
        .await;
    assert_eq!(
        (st, v["title"].as_str(), v["state"].as_str()),
        (200, Some("renamed"), Some("running"))
    );
    let (st, _) = s
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(&alice),
            Some(json!({"desktop": 100})),
        )
        .await;
    assert_eq!(st, 422, "desktop numbers are 0..=99");
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/sessions/{b1}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(st, 403);
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/sessions/{b1}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (st, _) = s
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{b1}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(st, 404);
    let audit = s.state.store().list_audit(None, 1000).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "session.delete" && a.target == b1)
    );
}

fn text(t: &str) -> Value {
    json!([{"type": "text", "text": t}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_paginate_and_context_windows_fit_their_budget() {
    let s = start(|_| {}).await;
    let admin = s.admin().await;
    let alice = s.user(&admin, "alice").await;
    let sid = s
        .session(&alice, Some("You are a careful browser agent."))
        .await;
    let path = format!("/api/v1/sessions/{sid}/messages");
    for i in 0..30 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let (st, m) = s
            .call(
                Method::POST,
                &path,
                Some(&alice),
                Some(json!({"role": role, "content": text(&format!("turn number {i} with some words in it"))})),
            )
            .await;
        assert_eq!(st, 201, "{m}");
        assert_eq!(m["seq"], i);
        assert!(m["tokens"].as_u64().unwrap() > 4);
    }
    let (st, img) = s
        .call(
            Method::POST,
            &path,
            Some(&alice),
            Some(json!({"role": "tool", "content": [{"type": "image", "ref": "shot-1", "media_type": "image/png", "tokens": 800}]})),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(img["tokens"], 804);
    // Pagination.
    let (_, p1) = s
        .call(Method::GET, &format!("{path}?limit=10"), Some(&alice), None)
        .await;
    assert_eq!(p1["messages"].as_array().unwrap().len(), 10);
    assert_eq!(p1["next_after"], 9);
    let (_, p4) = s
        .call(
            Method::GET,
            &format!("{path}?after=29&limit=10"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(p4["messages"].as_array().unwrap().len(), 1);
    assert!(p4["next_after"].is_null());
    let (st, _) = s
        .call(Method::GET, &format!("{path}?limit=0"), Some(&alice), None)
        .await;
    assert_eq!(st, 422);
    let (st, _) = s
        .call(
            Method::GET,
            &format!("{path}?after=abc"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(st, 400);
    // Bad bodies are refused and nothing is stored.
    for bad in [
        json!({"role": "user", "content": []}),
        json!({"role": "robot", "content": text("x")}),
        json!({"role": "user", "content": text("x"), "extra": 1}),
    ] {
        let (st, e) = s.call(Method::POST, &path, Some(&alice), Some(bad)).await;
        assert!(st == 422 || st == 400, "{st} {e}");
        assert!(e["message"].is_string());
    }
    let (_, sess) = s
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{sid}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(sess["message_count"], 31);

    let ctx = |budget: u32| {
        let s = &s;
        let alice = alice.clone();
        let sid = sid.clone();
        async move {
            s.call(
                Method::GET,
                &format!("/api/v1/sessions/{sid}/context?budget_tokens={budget}"),
                Some(&alice),
                None,
            )
            .await
        }
    };
    let mut last_n = 0;
    for budget in [20u32, 100, 900, 1000, 5000, 100_000] {
        let (st, w) = ctx(budget).await;
        assert_eq!(st, 200, "{w}");
        let sys = w["system"]["tokens"].as_u64().unwrap();
        let msgs = w["messages"].as_array().unwrap();
        let sum: u64 = sys
            + msgs
                .iter()
                .map(|m| m["tokens"].as_u64().unwrap())
                .sum::<u64>();
        assert_eq!(w["used_tokens"].as_u64().unwrap(), sum);
        assert!(sum <= budget as u64, "budget {budget} exceeded: {sum}");
        // The newest turns, contiguous, oldest first.
        let seqs: Vec<u64> = msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        if let Some(&lastseq) = seqs.last() {
            assert_eq!(lastseq, 30);
            assert!(seqs.windows(2).all(|p| p[1] == p[0] + 1));
        }
        assert_eq!(
            w["omitted_messages"].as_u64().unwrap() + seqs.len() as u64,
            31
        );
        assert!(
            seqs.len() >= last_n,
            "a larger budget never yields fewer turns"
        );
        last_n = seqs.len();
        if budget == 100_000 {
            assert_eq!(seqs.len(), 31);
        }
        if budget == 100 {
            assert!(seqs.is_empty(), "the 804-token image turn does not fit 100");
        }
    }
    let (st, e) = ctx(3).await;
    assert_eq!(st, 422, "system prompt alone exceeds 3 tokens: {e}");
    // A summary of turns 0..=19 replaces them.
    let (st, sum) = s
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{sid}/summaries"),
            Some(&alice),
            Some(json!({"from_seq": 0, "to_seq": 19, "text": "The user and agent counted turns."})),
        )
        .await;
    assert_eq!(st, 201, "{sum}");
    let (st, _) = s
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{sid}/summaries"),
            Some(&alice),
            Some(json!({"from_seq": 0, "to_seq": 99, "text": "past the end"})),
        )
        .await;
    assert_eq!(st, 422);
    let (_, w) = ctx(100_000).await;
    assert_eq!(w["summary"]["to_seq"], 19);
    let seqs: Vec<u64> = w["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (20..=30).collect::<Vec<_>>());
    assert_eq!(w["omitted_messages"], 0);
    let used = w["used_tokens"].as_u64().unwrap();
    let sys = w["system"]["tokens"].as_u64().unwrap();
    let sumt = w["summary"]["tokens"].as_u64().unwrap();
    let (_, w) = ctx((sys + sumt + 804) as u32).await;
    assert_eq!(w["messages"].as_array().unwrap().len(), 1);
    assert!(used > w["used_tokens"].as_u64().unwrap());
    // Too small for the summary: it is left out and flagged.
    let (_, w) = ctx((sys + 1) as u32).await;
    assert!(w["summary"].is_null());
    assert_eq!(w["summary_omitted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_tokens_are_signed_for_the_session_desktop_and_checked_by_scope() {
    let s = start(|_| {}).await;
    let admin = s.admin().await;
    let alice = s.user(&admin, "alice").await;
    let sid = s.session(&alice, None).await;
    let path = format!("/api/v1/sessions/{sid}/view-token");
    let (st, v) = s.call(Method::POST, &path, Some(&alice), None).await;
    assert_eq!(st, 201, "{v}");
    let claims = s
        .state
        .signing_key()
        .verify(v["token"].as_str().unwrap())
        .expect("valid");
    assert_eq!((claims.desktop, claims.role), (0, zigral_token::Role::View));
    // The proxy reads the same key file.
    let on_disk = zigral_token::SigningKey::load_or_create(s.dir.path()).unwrap();
    assert!(on_disk.verify(v["token"].as_str().unwrap()).is_ok());
    let (st, v) = s
        .call(
            Method::POST,
            &path,
            Some(&alice),
            Some(json!({"role": "control", "ttl_secs": 60})),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(v["role"], "control");
    let (_, t) = s
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&alice),
            Some(json!({"name": "viewer", "scopes": ["read", "write"]})),
        )
        .await;
    let viewer = t["token"].as_str().unwrap();
    let (st, _) = s
        .call(
            Method::POST,
            &path,
            Some(viewer),
            Some(json!({"role": "view"})),
        )
        .await;
    assert_eq!(st, 201);
    let (st, _) = s
        .call(
            Method::POST,
            &path,
            Some(viewer),
            Some(json!({"role": "control"})),
        )
        .await;
    assert_eq!(st, 403, "control needs the control scope");
    let (st, _) = s
        .call(
            Method::POST,
            &path,
            Some(&alice),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(st, 422);
    let (st, _) = s
        .call(
            Method::POST,
            &path,
            Some(&alice),
            Some(json!({"ttl_secs": 0})),
        )
        .await;
    assert_eq!(st, 422);
}

async fn ws_connect(s: &Server, token: &str) -> Ws {
    s.events(token).await
}

async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("event within 10 s")
            .expect("stream open")
            .expect("frame");
        if let tungstenite::Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_websocket_sees_own_session_changes_only() {
    let s = start(|_| {}).await;
    let admin = s.admin().await;
    let alice = s.user(&admin, "alice").await;
    let bob = s.user(&admin, "bob").await;
    // Without credentials the upgrade is refused.
    let req = format!("ws://127.0.0.1:{}/api/v1/events", s.port);
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let mut ws_alice = ws_connect(&s, &alice).await;
    let mut ws_admin = ws_connect(&s, &admin).await;
    assert_eq!(next_event(&mut ws_alice).await["kind"], "hello");
    assert_eq!(next_event(&mut ws_admin).await["kind"], "hello");
    let bob_sid = s.session(&bob, None).await;
    let sid = s.session(&alice, None).await;
    let ev = next_event(&mut ws_alice).await;
    assert_eq!(ev["kind"], "session.created");
    assert_eq!(
        ev["session_id"],
        sid.as_str(),
        "bob's session is not shown to alice"
    );
    let ev = next_event(&mut ws_admin).await;
    assert_eq!(ev["session_id"], bob_sid.as_str(), "admins see everything");
    s.call(
        Method::POST,
        &format!("/api/v1/sessions/{sid}/messages"),
        Some(&alice),
        Some(json!({"role": "user", "content": text("hi")})),
    )
    .await;
    let ev = next_event(&mut ws_alice).await;
    assert_eq!(
        (ev["kind"].as_str(), ev["data"]["seq"].as_u64()),
        (Some("message.appended"), Some(0))
    );
    s.call(
        Method::DELETE,
        &format!("/api/v1/sessions/{sid}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(next_event(&mut ws_alice).await["kind"], "session.deleted");
    ws_alice.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_events_client_is_dropped_not_buffered() {
    let s = start(|c| c.events_queue = 8).await;
    let admin = s.admin().await;
    let mut ws = ws_connect(&s, &admin).await;
    assert_eq!(next_event(&mut ws).await["kind"], "hello");
    // Stop reading and flood the bus well past the queue; each event is ~8 KiB so the socket
    // buffers fill and the server-side receiver lags.
    let big = "x".repeat(8192);
    for i in 0..20_000 {
        s.state.publish(zigral_control::events::Event::new(
            "flood",
            None,
            None,
            json!({"i": i, "pad": big}),
        ));
        if i % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Now drain: the stream must end (closed by the server) instead of delivering all 20,000.
    let mut got = 0u32;
    let mut closed_code = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(tungstenite::Message::Text(_)))) => got += 1,
            Ok(Some(Ok(tungstenite::Message::Close(f)))) => {
                closed_code = f.map(|f| u16::from(f.code));
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => panic!("server neither delivered nor closed"),
        }
    }
    assert!(
        got < 20_000,
        "slow client was buffered without bound ({got} delivered)"
    );
    assert!(matches!(closed_code, Some(1013) | None), "{closed_code:?}");
    let m = s.call(Method::GET, "/metrics", Some(&admin), None).await;
    let _ = m;
    let text = s
        .http
        .get(s.url("/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("zigral_events_dropped_clients_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped >= 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_with_the_right_status_and_limits_hold() {
    let s = start(|c| c.max_body_bytes = 4096).await;
    let admin = s.admin().await;
    let (st, e) = s
        .call(Method::GET, "/api/v1/nope", Some(&admin), None)
        .await;
    assert_eq!((st, e["error"].as_str()), (404, Some("not_found")));
    let (st, e) = s
        .call(Method::PUT, "/api/v1/sessions", Some(&admin), None)
        .await;
    assert_eq!((st, e["error"].as_str()), (405, Some("method_not_allowed")));
    let sid = s.session(&admin, None).await;
    let big = "y".repeat(10_000);
    let (st, e) = s
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{sid}/messages"),
            Some(&admin),
            Some(json!({"role": "user", "content": text(&big)})),
        )
        .await;
    assert_eq!((st, e["error"].as_str()), (413, Some("payload_too_large")));
    let r = s
        .http
        .post(s.url("/api/v1/sessions"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("x-request-id").is_some());
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "bad_request");
    let r = s
        .http
        .post(s.url("/api/v1/sessions"))
        .bearer_auth(&admin)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Nothing was created by the refused requests.
    let (_, list) = s
        .call(Method::GET, "/api/v1/sessions", Some(&admin), None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    // The OpenAPI document needs auth too and describes the API.
    let (st, _) = s
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(st, 401);
    let (st, doc) = s
        .call(Method::GET, "/api/v1/openapi.json", Some(&admin), None)
        .await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/api/v1/sessions/{id}/context"]["get"].is_object());
    // Health endpoints need no auth; metrics do.
    let (st, h) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((st, h["status"].as_str()), (200, Some("ok")));
    let (st, _) = s.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(st, 401);
    let text = s
        .http
        .get(s.url("/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("# TYPE zigral_http_requests_total counter"));
    assert!(text.contains("zigral_store_commits_total"));
    assert!(text.contains("zigral_http_requests_total{class=\"4xx\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_admin_only_and_password_change() {
    let s = start(|_| {}).await;
    let admin = s.admin().await;
    let alice = s.user(&admin, "alice").await;
    let (st, _) = s
        .call(Method::GET, "/api/v1/users", Some(&alice), None)
        .await;
    assert_eq!(st, 403);
    let (st, _) = s
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username": "alice", "password": "another-pw"})),
        )
        .await;
    assert_eq!(st, 409);
    let (st, _) = s
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username": "b c", "password": "another-pw"})),
        )
        .await;
    assert_eq!(st, 422);
    let (st, _) = s
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username": "carol", "password": "short"})),
        )
        .await;
    assert_eq!(st, 422);
    let (st, _) = s
        .call(
            Method::POST,
            "/api/v1/auth/password",
            Some(&alice),
            Some(json!({"current_password": "wrong-one!", "new_password": "new-alice-pw"})),
        )
        .await;
    assert_eq!(st, 403);
    let (st, _) = s
        .call(
            Method::POST,
            "/api/v1/auth/password",
            Some(&alice),
            Some(json!({"current_password": "alice-password", "new_password": "new-alice-pw"})),
        )
        .await;
    assert_eq!(st, 204);
    s.login("alice", "new-alice-pw").await;
    let (_, me) = s
        .call(Method::GET, "/api/v1/auth/me", Some(&alice), None)
        .await;
    let alice_id = me["user_id"].as_str().unwrap().to_owned();
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/users/{alice_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (st, _) = s
        .call(Method::GET, "/api/v1/auth/me", Some(&alice), None)
        .await;
    assert_eq!(st, 401, "a deleted user's tokens stop working");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_and_marks_the_cookie_secure() {
    // A self-signed certificate made with openssl (Debian base).
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl")
        .success();
    assert!(ok);
    let tls = zigral_control::load_tls(&cert, &key).expect("tls config");
    let sdir = tempfile::tempdir().unwrap();
    let mut cfg = zigral_control::Config::with_state_dir(sdir.path());
    cfg.tls_cert = Some(cert.clone());
    cfg.tls_key = Some(key.clone());
    let store = zigral_store::Store::open_in(sdir.path()).unwrap();
    zigral_control::bootstrap::ensure_admin(&store, Some(ADMIN_PASSWORD))
        .await
        .unwrap();
    let state = zigral_control::AppState::new(cfg, store, zigral_token::SigningKey::generate());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(zigral_control::serve_tls(
        l,
        tls,
        state,
        std::future::pending(),
    ));
    // Speak TLS with openssl s_client (reqwest here is built without TLS).
    let req = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        json!({"username":"admin","password":ADMIN_PASSWORD})
            .to_string()
            .len(),
        json!({"username":"admin","password":ADMIN_PASSWORD})
    );
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut c = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-connect",
                &format!("127.0.0.1:{port}"),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        c.stdin.as_mut().unwrap().write_all(req.as_bytes()).unwrap();
        let out = c.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let cookie = out
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Plain HTTP to the TLS port gets nothing useful.
    let plain = zigral_tests::http_get(port, "/healthz");
    assert!(plain.map(|(c, _)| c != 200).unwrap_or(true));
}
