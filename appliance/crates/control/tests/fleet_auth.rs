//! One login for the whole fleet (issue 17), through the real HTTP API of port-0 control
//! planes that share the fleet settings and never talk to each other:
//! - a fleet user's password login on one appliance returns a `zgf_` token that the others
//!   accept (bearer and cookie), their sessions say which appliance they live on; an
//!   appliance of another fleet, a tampered token and an expired one are refused with a
//!   sentence; a local user's token stays on its appliance;
//! - key rotation: tokens of the old key keep working where both keys are set, a token of the
//!   new key is refused by name where it is not set yet;
//! - the list is the source: a fleet user cannot be changed through one appliance (409
//!   `fleet_managed`), a local one can; listing a user as `disabled` cuts their token off;
//! - `GET /api/v1/info` shows the fleet and, through the fleet's pinned route, the prefix;
//!   cookies through the fleet are fleet-wide for fleet tokens and scoped to `/a/<name>/`
//!   for local ones.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};
use zigral_control::fleet_auth::{self, FleetSettings};

const ALICE_PW: &str = "alice-fleet-password";
const ROOT_PW: &str = "root-fleet-password";

fn key(id: &str, byte: u8) -> String {
    format!("{id}:{}", URL_SAFE_NO_PAD.encode([byte; 32]))
}

/// `fleet_users` with alice (user) and root (admin); alice `disabled` when asked.
fn users(alice_role: &str) -> String {
    let a = zigral_control::auth::hash_password(ALICE_PW).unwrap();
    let r = zigral_control::auth::hash_password(ROOT_PW).unwrap();
    format!("alice:{alice_role}:{a}\nroot:admin:{r}")
}

fn settings(keys: &str, users: &str) -> FleetSettings {
    FleetSettings {
        keys: fleet_auth::parse_keys(keys).unwrap(),
        users: fleet_auth::parse_users(users).unwrap(),
        members: fleet_auth::parse_members("zigral-{0..2}").unwrap(),
    }
}

/// An appliance named `name` with `fleet`, its users brought in line as at startup.
async fn appliance(name: &str, fleet: FleetSettings) -> common::Server {
    let (n, f) = (name.to_owned(), fleet.clone());
    let srv = common::start(move |c| {
        c.appliance_name = n;
        c.fleet = f;
    })
    .await;
    let r = fleet_auth::sync_users(srv.state.store(), &fleet.users, zigral_store::now_ms())
        .await
        .unwrap();
    assert_eq!(r.created, fleet.users.len(), "{r:?}");
    srv
}

async fn me(srv: &common::Server, token: &str) -> (u16, Value) {
    srv.call(Method::GET, "/api/v1/auth/me", Some(token), None)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_login_works_on_every_appliance_of_the_fleet_and_nowhere_else() {
    let shared = users("user");
    let keys = key("k1", 1);
    let a = appliance("zigral-0", settings(&keys, &shared)).await;
    let b = appliance("zigral-1", settings(&keys, &shared)).await;
    let other = appliance("zigral-0", settings(&key("k1", 9), &shared)).await;

    let alice = a.login("alice", ALICE_PW).await;
    assert!(alice.starts_with("zgf_k1."), "{alice}");
    let (s, v) = me(&b, &alice).await;
    assert_eq!((s, v["username"].as_str()), (200, Some("alice")), "{v}");
    assert_eq!(v["is_admin"], false);
    // Her sessions live where they are created, and say so.
    let (s, sess) = b
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(&alice),
            Some(json!({"title": "on b"})),
        )
        .await;
    assert_eq!(
        (s, sess["appliance"].as_str()),
        (201, Some("zigral-1")),
        "{sess}"
    );
    let (_, list) = b
        .call(Method::GET, "/api/v1/sessions", Some(&alice), None)
        .await;
    assert_eq!(list[0]["appliance"], "zigral-1", "{list}");
    // The cookie form works as well (the web app).
    let r = b
        .http
        .get(b.url("/api/v1/auth/me"))
        .header("cookie", format!("zigral_session={alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Another fleet's key: refused, naming nothing secret.
    let (s, v) = me(&other, &alice).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["message"], "invalid or revoked token", "{v}");
    // A changed claim (someone else's name) breaks the signature.
    let parts: Vec<&str> = alice.split('.').collect();
    let forged_claims = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&json!({"u": "root", "iat": 1, "exp": u64::MAX, "jti": "x"})).unwrap(),
    );
    let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
    assert_eq!(me(&b, &forged).await.0, 401);
    // Expiry follows each appliance's clock: past login_ttl_secs, refused everywhere.
    b.clock.advance(b.state.config().login_ttl_secs + 1);
    let (s, v) = me(&b, &alice).await;
    assert_eq!(
        (s, v["message"].as_str()),
        (401, Some("token expired")),
        "{v}"
    );
    assert_eq!(me(&a, &alice).await.0, 200);

    // A local user's token belongs to its appliance only.
    let root_a = a.login("root", ROOT_PW).await;
    let bob = a.user(&root_a, "bob").await;
    assert!(bob.starts_with("zgl_"), "{bob}");
    assert_eq!(me(&a, &bob).await.0, 200);
    assert_eq!(me(&b, &bob).await.0, 401);

    // The same user name on an appliance without fleet keys does not take fleet tokens.
    let lone = common::start(|_| {}).await;
    let (s, v) = me(&lone, &alice).await;
    assert_eq!(s, 401, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("not in a fleet"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_without_logging_anyone_out() {
    let u = users("user");
    let old_only = appliance("zigral-0", settings(&key("old", 1), &u)).await;
    let both = appliance(
        "zigral-1",
        settings(&format!("{} {}", key("new", 2), key("old", 1)), &u),
    )
    .await;
    // Step 1 (old appliance, not rotated yet) signs with `old`: accepted where both are set.
    let t_old = old_only.login("alice", ALICE_PW).await;
    assert!(t_old.starts_with("zgf_old."));
    assert_eq!(me(&both, &t_old).await.0, 200);
    // A rotated appliance signs with `new`; one not rotated yet says which key it lacks.
    let t_new = both.login("alice", ALICE_PW).await;
    assert!(t_new.starts_with("zgf_new."));
    let (s, v) = me(&old_only, &t_new).await;
    assert_eq!(s, 401);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("signed with key 'new', which this appliance does not have"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_users_are_changed_in_the_list_not_through_one_appliance() {
    let keys = key("k1", 1);
    let a = appliance("zigral-0", settings(&keys, &users("user"))).await;
    let root = a.login("root", ROOT_PW).await;
    let alice = a.login("alice", ALICE_PW).await;
    let (_, list) = a
        .call(Method::GET, "/api/v1/users", Some(&root), None)
        .await;
    let id_of = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let alice_id = id_of("alice");
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/api/v1/users/{alice_id}"),
            Some(json!({"disabled": true})),
        ),
        (
            Method::POST,
            format!("/api/v1/users/{alice_id}/password"),
            Some(json!({"password": "another-password"})),
        ),
        (Method::DELETE, format!("/api/v1/users/{alice_id}"), None),
    ] {
        let (s, v) = a.call(method.clone(), &path, Some(&root), body).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (409, Some("fleet_managed")),
            "{method} {path}: {v}"
        );
        assert!(
            v["message"].as_str().unwrap().contains("fleet_users"),
            "{v}"
        );
    }
    let (s, v) = a
        .call(
            Method::POST,
            "/api/v1/auth/password",
            Some(&alice),
            Some(json!({"current_password": ALICE_PW, "new_password": "another-password"})),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (409, Some("fleet_managed")),
        "{v}"
    );
    // Nothing changed: her password and her token still work.
    assert_eq!(me(&a, &a.login("alice", ALICE_PW).await).await.0, 200);
    assert_eq!(me(&a, &alice).await.0, 200);
    // Local settings of a fleet user (limits, profile) stay the appliance's to change.
    let (s, v) = a
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{alice_id}"),
            Some(&root),
            Some(json!({"persistent_profile": true})),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // The list says `disabled`: at the next start her fleet token is refused there.
    let disabled = fleet_auth::parse_users(&users("disabled")).unwrap();
    let r = fleet_auth::sync_users(a.state.store(), &disabled, zigral_store::now_ms())
        .await
        .unwrap();
    assert_eq!((r.updated, r.unchanged, r.created), (2, 0, 0), "{r:?}");
    let (s, v) = me(&a, &alice).await;
    assert_eq!(s, 403, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_cookies_follow_the_fleet_route() {
    let a = appliance("zigral-0", settings(&key("k1", 1), &users("user"))).await;
    let get_info = |prefix: Option<&'static str>| {
        let mut r = a.http.get(a.url("/api/v1/info"));
        if let Some(p) = prefix {
            r = r.header("x-forwarded-prefix", p);
        }
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let direct = get_info(None).await;
    assert_eq!(direct["appliance"]["prefix"], Value::Null, "{direct}");
    assert_eq!(
        direct["appliance"]["fleet"]["members"],
        json!(["zigral-0", "zigral-1", "zigral-2"])
    );
    let pinned = get_info(Some("/a/zigral-0")).await;
    assert_eq!(pinned["appliance"]["prefix"], "/a/zigral-0", "{pinned}");
    // A prefix naming another appliance is not ours to use.
    let wrong = get_info(Some("/a/zigral-1")).await;
    assert_eq!(wrong["appliance"]["prefix"], Value::Null);

    let cookie_of = |user: &'static str, pw: &'static str| {
        let r = a
            .http
            .post(a.url("/api/v1/auth/login"))
            .header("x-forwarded-prefix", "/a/zigral-0")
            .json(&json!({"username": user, "password": pw}));
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["set-cookie"].to_str().unwrap().to_owned()
        }
    };
    let fleet_cookie = cookie_of("alice", ALICE_PW).await;
    assert!(fleet_cookie.contains("; Path=/;"), "{fleet_cookie}");
    let root = a.login("root", ROOT_PW).await;
    a.user(&root, "bob").await; // a local user, password "bob-password"
    let local_cookie = cookie_of("bob", "bob-password").await;
    assert!(
        local_cookie.contains("; Path=/a/zigral-0/;"),
        "{local_cookie}"
    );

    // Not in a fleet: no fleet, no prefix.
    let lone = common::start(|_| {}).await;
    let (_, v) = lone.call(Method::GET, "/api/v1/info", None, None).await;
    assert_eq!(v["appliance"]["fleet"], Value::Null, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_user_list_is_synced_once_and_then_left_alone() {
    let srv = common::start(|_| {}).await;
    let h = zigral_control::auth::hash_password("many-users-password").unwrap();
    let list: String = (0..300).map(|i| format!("user{i}:user:{h}\n")).collect();
    let users = fleet_auth::parse_users(&list).unwrap();
    let store = srv.state.store();
    let r = fleet_auth::sync_users(store, &users, zigral_store::now_ms())
        .await
        .unwrap();
    assert_eq!((r.created, r.updated, r.unchanged), (300, 0, 0), "{r:?}");
    let r = fleet_auth::sync_users(store, &users, zigral_store::now_ms())
        .await
        .unwrap();
    assert_eq!((r.created, r.updated, r.unchanged), (0, 0, 300), "{r:?}");
    assert!(store.get_user_by_name("user299").unwrap().is_some());
}
