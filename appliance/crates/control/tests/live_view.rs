//! The live-view switch through the real HTTP API of a port-0 control plane (static desktops,
//! so only administrators may switch): `PUT /api/v1/desktops/{n}/live-view` writes and removes
//! `<state>/liveview/N`, the file the proxy obeys; `GET` reads it back; other users and bad
//! bodies change nothing; switches are audited, published as `desktop.live_view` events to
//! administrators only, and documented in the OpenAPI document. (The whole path through the
//! real proxy, with an owner's managed desktop, is tests/tests/live_view.rs at the repo root.)

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use zigral_token::LiveViewFiles;

const PATH: &str = "/api/v1/desktops/3/live-view";

/// The next event of `kind` on an events websocket (10 s failure bound).
async fn next_event(ws: &mut common::Ws, kind: &str) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("event within 10 s")
            .expect("stream open")
            .expect("frame");
        if let tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).expect("json");
            if v["kind"] == kind {
                return v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_writes_the_file_the_proxy_obeys_for_admins_only_here() {
    let srv = common::start(|_| {}).await;
    let admin = srv.admin().await;
    let alice = srv.user(&admin, "alice").await;
    let files = LiveViewFiles::new(srv.dir.path());
    let mut admin_events = srv.events(&admin).await;
    next_event(&mut admin_events, "hello").await;
    let mut alice_events = srv.events(&alice).await;
    next_event(&mut alice_events, "hello").await;

    // On until switched.
    let (s, v) = srv.call(Method::GET, PATH, Some(&admin), None).await;
    assert_eq!((s, &v), (200, &json!({"desktop": 3, "enabled": true})));

    // Off: the file exists (0600), GET says so, the change is published and audited.
    let (s, v) = srv
        .call(
            Method::PUT,
            PATH,
            Some(&admin),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!((s, &v), (200, &json!({"desktop": 3, "enabled": false})));
    assert!(files.is_off(3).expect("read"), "the proxy would see it off");
    assert!(!files.is_off(2).expect("read"), "only desktop 3");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(files.path(3))
        .expect("file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (s, v) = srv.call(Method::GET, PATH, Some(&admin), None).await;
    assert_eq!((s, v["enabled"].clone()), (200, json!(false)));
    let ev = next_event(&mut admin_events, "desktop.live_view").await;
    let (_, me) = srv
        .call(Method::GET, "/api/v1/auth/me", Some(&admin), None)
        .await;
    assert_eq!(ev["data"]["desktop"], 3, "{ev}");
    assert_eq!(ev["data"]["enabled"], false, "{ev}");
    assert_eq!(ev["data"]["by"], me["user_id"], "{ev} / {me}");
    assert_eq!(ev["data"]["by_name"], "admin", "{ev}");

    // Alice (no desktop of hers is desktop 3; with static desktops nobody owns one) gets the
    // owner-scoped desktop routes' 404 for reading and switching, and changes nothing.
    for (m, body) in [
        (Method::GET, None),
        (Method::PUT, Some(json!({"enabled": true}))),
        (Method::PUT, Some(json!({"enabled": false}))),
    ] {
        let (s, v) = srv.call(m.clone(), PATH, Some(&alice), body).await;
        assert_eq!(s, 404, "{m} by alice: {v}");
        assert_eq!(v["error"], "not_found", "{v}");
    }
    assert!(files.is_off(3).expect("read"), "alice changed nothing");

    // Bad bodies: refused, nothing changes.
    for (label, body, want) in [
        ("a string", json!({"enabled": "yes"}), 422),
        ("unknown field", json!({"enabled": true, "x": 1}), 422),
        ("missing field", json!({}), 422),
        ("not an object", json!([true]), 422),
    ] {
        let (s, v) = srv.call(Method::PUT, PATH, Some(&admin), Some(body)).await;
        assert_eq!(s, want, "{label}: {v}");
        assert_eq!(v["error"], "invalid", "{label}: {v}");
    }
    let r = srv
        .http
        .put(srv.url(PATH))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let (s, _) = srv
        .call(
            Method::PUT,
            "/api/v1/desktops/100/live-view",
            Some(&admin),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, 404, "past the last desktop number");
    assert!(files.is_off(3).expect("read"), "still off");
    assert!(!files.path(100).exists());

    // On again: the file goes.
    let (s, v) = srv
        .call(
            Method::PUT,
            PATH,
            Some(&admin),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!((s, &v), (200, &json!({"desktop": 3, "enabled": true})));
    assert!(!files.path(3).exists());
    let ev = next_event(&mut admin_events, "desktop.live_view").await;
    assert_eq!(ev["data"]["enabled"], true, "{ev}");
    // Switching to what it already is: audited, no event. The next event the admin sees is
    // the one after it.
    let (s, _) = srv
        .call(
            Method::PUT,
            PATH,
            Some(&admin),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = srv
        .call(
            Method::PUT,
            PATH,
            Some(&admin),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, 200);
    let ev = next_event(&mut admin_events, "desktop.live_view").await;
    assert_eq!(ev["data"]["enabled"], false, "{ev}");

    // Alice was never told: the events went to administrators only.
    let mut seen = Vec::new();
    while let Ok(Some(Ok(m))) =
        tokio::time::timeout(Duration::from_millis(300), alice_events.next()).await
    {
        if let tungstenite::Message::Text(t) = m {
            seen.push(t.to_string());
        }
    }
    assert!(
        seen.iter().all(|t| !t.contains("desktop.live_view")),
        "{seen:?}"
    );

    let (s, audit) = srv
        .call(
            Method::GET,
            "/api/v1/admin/audit?limit=1000",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200, "{audit}");
    let switches: Vec<(Value, Value)> = audit
        .as_array()
        .expect("list")
        .iter()
        .filter(|a| a["action"] == "desktop.live_view")
        .map(|a| (a["target"].clone(), a["detail"]["enabled"].clone()))
        .collect();
    assert_eq!(switches.len(), 4, "{switches:?}");
    assert!(switches.iter().all(|(t, _)| t == "3"), "{switches:?}");

    // Documented next to the other desktop routes.
    let (s, doc) = srv
        .call(Method::GET, "/api/v1/openapi.json", Some(&admin), None)
        .await;
    assert_eq!(s, 200);
    let item = &doc["paths"]["/api/v1/desktops/{n}/live-view"];
    assert_eq!(item["put"]["tags"][0], "desktops", "{item}");
    assert!(item["get"]["responses"]["200"].is_object(), "{item}");
    assert!(
        item["put"]["requestBody"].is_object() && item["put"]["responses"]["404"].is_object(),
        "{item}"
    );
}
