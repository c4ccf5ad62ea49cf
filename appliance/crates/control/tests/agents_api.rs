//! Agent profiles over the HTTP API: the shipped sample profile is accepted; every field is
//! checked (422 naming the field, nothing stored); the API key is write-only and kept out of
//! the database; users see their own and the administrators' profiles; a profile in use
//! cannot be deleted; a chat message on a session without an agent is stored and published
//! for external agents.

mod common;

use reqwest::Method;
use serde_json::{Value, json};

fn sample() -> Value {
    let p = zigral_tests::repo_root().join("config/agents/professional-network-assistant.json");
    serde_json::from_slice(&std::fs::read(&p).expect("sample profile")).expect("json")
}

#[tokio::test]
async fn the_sample_profile_is_accepted_and_bad_profiles_are_refused_with_the_field() {
    let s = common::start(|_| {}).await;
    let admin = s.admin().await;
    let mut body = sample();
    body["api_key"] = json!("sk-ant-sample-key-0123456789");
    let (st, v) = s
        .call(Method::POST, "/api/v1/agents", Some(&admin), Some(body))
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["provider"]["generation"], "computer_20251124");
    assert_eq!(v["api_key_set"], true);
    assert!(v.get("api_key").is_none());
    let id = v["id"].as_str().expect("id").to_owned();
    let (_, got) = s
        .call(
            Method::GET,
            &format!("/api/v1/agents/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert!(!got.to_string().contains("sk-ant-sample"), "{got}");

    let cases = [
        (
            json!({"provider": {"generation": "computer_2099"}}),
            "provider.generation",
        ),
        (json!({"risky_patterns": ["(unclosed"]}), "risky_patterns"),
        (
            json!({"start_url": "https://elsewhere.example/"}),
            "start_url",
        ),
        (
            json!({"allowed_domains": ["not a host"]}),
            "allowed_domains",
        ),
        (json!({"max_steps": 0}), "max_steps"),
        (
            json!({"provider": {"generation": "functions", "thinking": "adaptive"}}),
            "provider.thinking",
        ),
        (
            json!({"provider": {"base_url": "ftp://x"}}),
            "provider.base_url",
        ),
        (json!({"name": ""}), "name"),
        (json!({"api_key": "has spaces in it"}), "API key"),
    ];
    let before = s
        .call(Method::GET, "/api/v1/agents", Some(&admin), None)
        .await
        .1;
    for (patch, field) in cases {
        let mut b = sample();
        for (k, v) in patch.as_object().expect("object") {
            match (b.get_mut(k), v) {
                (Some(Value::Object(o)), Value::Object(n)) => o.extend(n.clone()),
                _ => {
                    b[k] = v.clone();
                }
            }
        }
        let (st, v) = s
            .call(Method::POST, "/api/v1/agents", Some(&admin), Some(b))
            .await;
        assert_eq!(st, 422, "{patch}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains(field)),
            "{patch}: {v}"
        );
    }
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/agents",
            Some(&admin),
            Some(json!({"name": "x", "provider": {"generation": "computer", "model": "m"}, "bogus": 1})),
        )
        .await;
    assert_eq!(st, 422, "unknown fields are refused: {v}");
    let after = s
        .call(Method::GET, "/api/v1/agents", Some(&admin), None)
        .await
        .1;
    assert_eq!(before, after, "refused profiles change nothing");

    // The key is not in the database file.
    let db = std::fs::read(s.dir.path().join(zigral_store::DB_FILE)).expect("db");
    let key = b"sk-ant-sample-key-0123456789";
    assert!(
        !db.windows(key.len()).any(|w| w == key),
        "the key reached redb"
    );
}

#[tokio::test]
async fn profiles_are_per_user_and_a_used_profile_is_kept() {
    let s = common::start(|_| {}).await;
    let admin = s.admin().await;
    let alice = s.user(&admin, "alice").await;
    let bob = s.user(&admin, "bob").await;
    let body = |name: &str| {
        json!({"name": name, "provider": {"generation": "functions", "model": "llama3.1",
               "base_url": "http://127.0.0.1:11434"}})
    };
    let (st, shared) = s
        .call(
            Method::POST,
            "/api/v1/agents",
            Some(&admin),
            Some(body("shared")),
        )
        .await;
    assert_eq!(st, 201, "{shared}");
    let (st, mine) = s
        .call(
            Method::POST,
            "/api/v1/agents",
            Some(&alice),
            Some(body("alice's")),
        )
        .await;
    assert_eq!(st, 201, "{mine}");
    let mine_id = mine["id"].as_str().expect("id").to_owned();
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .expect("list")
            .iter()
            .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let (_, l) = s
        .call(Method::GET, "/api/v1/agents", Some(&bob), None)
        .await;
    assert_eq!(names(l), ["shared"], "bob sees the admin's, not alice's");
    let (st, _) = s
        .call(
            Method::GET,
            &format!("/api/v1/agents/{mine_id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(st, 404);
    let shared_id = shared["id"].as_str().expect("id");
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/agents/{shared_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(st, 403, "users may use but not change the admin's profiles");

    // A session using the profile keeps it alive.
    let sid = s.session(&alice, None).await;
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/api/v1/sessions/{sid}/agent"),
            Some(&alice),
            Some(json!({"profile": mine_id})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/agents/{mine_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(st, 409, "{v}");
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/api/v1/sessions/{sid}/agent"),
            Some(&bob),
            Some(json!({"profile": null})),
        )
        .await;
    assert_eq!(st, 403, "bob cannot change alice's session: {v}");
}

#[tokio::test]
async fn without_an_agent_a_chat_message_is_stored_and_published() {
    let s = common::start(|_| {}).await;
    let admin = s.admin().await;
    let sid = s.session(&admin, None).await;
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{sid}/chat"),
            Some(&admin),
            Some(json!({"text": "hello, external agent"})),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["agent"], Value::Null);
    let (_, msgs) = s
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{sid}/messages"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        msgs["messages"][0]["content"][0]["text"],
        "hello, external agent"
    );
    let (st, _) = s
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{sid}/chat"),
            Some(&admin),
            Some(json!({"text": ""})),
        )
        .await;
    assert_eq!(st, 422);
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{sid}/agent/stop"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((st, v["error"].as_str()), (409, Some("agent_idle")));
}
