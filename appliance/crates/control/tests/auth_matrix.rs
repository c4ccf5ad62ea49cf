//! Every route in the served OpenAPI document (so routes added later are covered without
//! editing this test) refuses: no credentials, an expired token, a revoked token, a garbage
//! token — and, for session routes, another user's valid token on someone else's session.
//! Only /healthz, /readyz, GET /api/v1/info and POST /api/v1/auth/login are public.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const PUBLIC: [(&str, &str); 4] = [
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/api/v1/info"),
    ("post", "/api/v1/auth/login"),
];

fn fill(path: &str, session: &str) -> String {
    // Session-scoped paths get a real session; other ids get a placeholder.
    let mut out = String::new();
    let mut rest = path;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').map(|j| i + j).unwrap_or(rest.len() - 1);
        let name = &rest[i + 1..j];
        let before = &out;
        let val = if before.ends_with("/sessions/") {
            session.to_owned()
        } else {
            format!("placeholder-{name}")
        };
        out.push_str(&val);
        rest = &rest[j + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_refuses_bad_credentials() {
    let s = start(|_| {}).await;
    let admin = s.admin().await;
    let alice = s.user(&admin, "alice").await;
    let bob = s.user(&admin, "bob").await;
    let alice_session = s.session(&alice, Some("prompt")).await;
    // An expired and a revoked API token of alice, both with every scope she may have.
    let (_, t) = s
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&alice),
            Some(json!({"name": "short", "scopes": ["read", "write", "control"], "expires_in_secs": 1})),
        )
        .await;
    let expired = t["token"].as_str().unwrap().to_owned();
    let (_, t) = s
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&alice),
            Some(json!({"name": "revoked", "scopes": ["read", "write", "control"]})),
        )
        .await;
    let revoked = t["token"].as_str().unwrap().to_owned();
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", t["id"].as_str().unwrap()),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(st, 204);
    // Past the short token's expiry.
    s.clock.advance(2);

    let (st, doc) = s
        .call(Method::GET, "/api/v1/openapi.json", Some(&admin), None)
        .await;
    assert_eq!(st, 200);
    let paths = doc["paths"].as_object().expect("paths");
    let mut checked = 0;
    let mut session_routes = 0;
    for (path, item) in paths {
        for (method, _op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            if PUBLIC.contains(&(method.as_str(), path.as_str())) {
                continue;
            }
            let m: Method = method.to_uppercase().parse().unwrap();
            let url = fill(path, &alice_session);
            let body = if m == Method::GET || m == Method::DELETE {
                None
            } else {
                Some(json!({}))
            };
            for (label, token) in [
                ("no credentials", None),
                ("expired token", Some(expired.as_str())),
                ("revoked token", Some(revoked.as_str())),
                ("garbage token", Some("zgt_not-a-real-token")),
            ] {
                let (st, e) = s.call(m.clone(), &url, token, body.clone()).await;
                assert_eq!(st, 401, "{method} {path} with {label}: {e}");
                assert_eq!(
                    e["error"], "unauthorized",
                    "{method} {path}: JSON error body"
                );
            }
            if path.starts_with("/api/v1/sessions/{id}") {
                session_routes += 1;
                let (st, e) = s.call(m.clone(), &url, Some(&bob), body.clone()).await;
                assert_eq!(
                    st, 403,
                    "{method} {path} with bob's token on alice's session: {e}"
                );
                // And the owner is not refused for auth reasons (on a fresh session, so a
                // DELETE does not remove the one the other checks use).
                let fresh = s.session(&alice, Some("prompt")).await;
                let own = fill(path, &fresh);
                let (st, e) = s.call(m.clone(), &own, Some(&alice), body.clone()).await;
                assert!(
                    st != 401 && st != 403,
                    "{method} {path} refused the owner: {st} {e}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} routes found");
    assert!(
        session_routes >= 6,
        "only {session_routes} session routes found"
    );
    // Alice's session survived bob's attempts (DELETE included).
    let (st, v): (u16, Value) = s
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{alice_session}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
}
