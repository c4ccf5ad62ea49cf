//! A local fleet (issue 17): host-mode stacks (zigral-init, Xvfb, x11vnc, Chromium, the proxy,
//! the control plane: everything real) named zigral-0 .. zigral-3, behind the real HAProxy
//! configuration of `deploy/haproxy/`, sharing only the fleet settings (`zigral fleet key`,
//! `zigral fleet user`).
//!
//! One login at the fleet address works everywhere; new sessions spread over the appliances;
//! every request of a session (REST, the events WebSocket, the noVNC WebSocket) reaches its
//! appliance through `/a/<name>/`; a killed appliance loses only its own sessions, which
//! answer 503 `appliance_unavailable`, and new sessions go to the others; a draining one takes
//! none; an added one takes new sessions; and a bounded load run of concurrent sessions,
//! created and driven from the fleet address, sees no routing error.
//!
//! HAProxy's health and agent checks run every 300 ms here instead of 5 s (the same
//! generated backends otherwise), so the test waits for HAProxy's view, not for the clock.
//! Needs root (desktops run as their own users) and haproxy (scripts/install-deps.sh).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use zigral_tests::api::{events_at, http, next_text, open_viewer_at};
use zigral_tests::haproxy::{Appliance, Haproxy, backends};
use zigral_tests::stack::Stack;
use zigral_tests::{bin, free_port, procs, wait_for};

const NAMES: [&str; 4] = ["zigral-0", "zigral-1", "zigral-2", "zigral-3"];
const USERS: [(&str, &str, &str); 3] = [
    ("alice", "user", "alice-fleet-password"),
    ("bob", "user", "bob-fleet-password"),
    ("root", "admin", "root-fleet-password"),
];

/// `zigral fleet ...` with `stdin`; its one line.
fn fleet_tool(args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(bin("zigral"))
        .arg("fleet")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "zigral fleet {args:?} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The fleet address: JSON requests with a bearer token.
struct Fleet {
    port: u16,
}

impl Fleet {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (s, text) = http(self.port, method, path, token, body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn login(&self, user: &str, password: &str) -> String {
        let (s, v) = self.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": user, "password": password})),
        );
        assert_eq!(s, 200, "login {user}: {v}");
        v["token"].as_str().unwrap().to_owned()
    }

    /// A new session at the fleet's root (HAProxy places it); (id, appliance).
    fn new_session(&self, token: &str) -> (String, String) {
        let (s, v) = self.call(
            "POST",
            "/api/v1/sessions",
            Some(token),
            Some(json!({"title": "fleet"})),
        );
        assert_eq!(s, 201, "{v}");
        (
            v["id"].as_str().unwrap().to_owned(),
            v["appliance"].as_str().unwrap().to_owned(),
        )
    }

    /// A session's own record through its appliance's pinned route.
    fn session(&self, token: &str, appliance: &str, id: &str) -> (u16, Value) {
        self.call(
            "GET",
            &format!("/a/{appliance}/api/v1/sessions/{id}"),
            Some(token),
            None,
        )
    }
}

/// Waits until HAProxy sees `server` of `backend` in the state `want` says.
fn await_state(
    h: &Haproxy,
    backend: &str,
    server: &str,
    what: &str,
    want: impl Fn(u32, u32) -> bool,
) {
    wait_for(Duration::from_secs(60), what, || {
        h.server_state(backend, server)
            .filter(|(op, admin)| want(*op, *admin))
    });
}

fn up(h: &Haproxy, server: &str) {
    await_state(
        h,
        "be_pool",
        server,
        &format!("{server} up in be_pool"),
        |op, admin| op == 2 && admin & 0x08 == 0,
    );
    await_state(
        h,
        "be_control",
        server,
        &format!("{server} up in be_control"),
        |op, _| op == 2,
    );
    await_state(
        h,
        "be_viewer",
        server,
        &format!("{server} up in be_viewer"),
        |op, _| op == 2,
    );
}

/// Everything a person does with one session, through its appliance's route: the record,
/// a message, the events WebSocket and the live view (the noVNC WebSocket, with a view token
/// minted by that appliance). Every answer must come from `appliance`.
fn use_session(f: &Fleet, token: &str, appliance: &str, id: &str) {
    let pre = format!("/a/{appliance}");
    let (s, v) = f.session(token, appliance, id);
    assert_eq!((s, v["appliance"].as_str()), (200, Some(appliance)), "{v}");
    let mut ev = events_at(f.port, &pre, token).unwrap();
    let (s, v) = f.call(
        "POST",
        &format!("{pre}/api/v1/sessions/{id}/messages"),
        Some(token),
        Some(
            json!({"role": "user", "content": [{"type": "text", "text": "hello from the fleet"}]}),
        ),
    );
    assert_eq!(s, 201, "{v}");
    // The message's event arrives on this appliance's events socket.
    loop {
        let e: Value = serde_json::from_str(&next_text(&mut ev).unwrap()).unwrap();
        if e["kind"] == "message.appended" && e["session_id"] == id {
            break;
        }
    }
    let (s, v) = f.call(
        "POST",
        &format!("{pre}/api/v1/sessions/{id}/view-token"),
        Some(token),
        Some(json!({})),
    );
    assert_eq!(s, 201, "{v}");
    let view = v["token"].as_str().unwrap().to_owned();
    let greeting = wait_for(
        Duration::from_secs(60),
        "the live view's RFB greeting",
        || open_viewer_at(f.port, &pre, &view).ok().map(|(_, g)| g),
    );
    assert!(greeting.starts_with("RFB 003."), "{greeting:?}");
}

#[test]
fn a_fleet_of_stacks_behind_haproxy_keeps_each_session_on_its_appliance() {
    let tmp = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile_dir(&tmp);
    let keys = fleet_tool(&["key", "k1"], "");
    let users: Vec<String> = USERS
        .iter()
        .map(|(n, r, p)| fleet_tool(&["user", n, "--role", r], &format!("{p}\n")))
        .collect();
    let users = users.join("\n");

    // Ports of all four appliances, named before any exists (zigral-3 joins later, as a
    // KubeVirt slot's DNS name resolves once its VM runs).
    let ports: Vec<(u16, u16, u16)> = NAMES
        .iter()
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let list: Vec<Appliance<'_>> = NAMES
        .iter()
        .zip(&ports)
        .map(|(name, (control, viewer, agent))| Appliance {
            name,
            control: *control,
            viewer: *viewer,
            agent: *agent,
        })
        .collect();
    let cfg = backends(&list)
        .replace("agent-inter 5s", "agent-inter 300ms")
        .replace("inter 5s", "inter 300ms");
    let h = Haproxy::start(&dir, &cfg);
    let f = Fleet { port: h.port };

    let start = |i: usize| {
        let (control, viewer, agent) = ports[i];
        let agent = format!("127.0.0.1:{agent}");
        Stack::start_at(
            &tmp,
            &format!("fleet{i}"),
            3,
            &[
                ("ZIGRAL_APPLIANCE_NAME", NAMES[i]),
                ("ZIGRAL_AGENT_LISTEN", &agent),
                ("ZIGRAL_FLEET_KEYS", &keys),
                ("ZIGRAL_FLEET_USERS", &users),
                ("ZIGRAL_FLEET_MEMBERS", "zigral-{0..3}"),
                ("ZIGRAL_DESKTOP_POLICY", "per-user"),
                ("ZIGRAL_WARM_POOL", "0"),
            ],
            viewer,
            control,
        )
    };
    let mut stacks: BTreeMap<usize, Stack> = (0..3).map(|i| (i, start(i))).collect();
    for n in &NAMES[..3] {
        up(&h, n);
    }

    // One login, at the fleet's root, works on every appliance.
    let alice = f.login("alice", "alice-fleet-password");
    let bob = f.login("bob", "bob-fleet-password");
    let root = f.login("root", "root-fleet-password");
    assert!(alice.starts_with("zgf_k1."), "{alice}");
    for n in &NAMES[..3] {
        let (s, v) = f.call("GET", &format!("/a/{n}/api/v1/auth/me"), Some(&alice), None);
        assert_eq!(
            (s, v["username"].as_str()),
            (200, Some("alice")),
            "{n}: {v}"
        );
        let (s, v) = f.call("GET", &format!("/a/{n}/api/v1/info"), None, None);
        assert_eq!(s, 200);
        assert_eq!(v["appliance"]["name"], *n);
        assert_eq!(v["appliance"]["prefix"], format!("/a/{n}"), "{v}");
        assert_eq!(
            v["appliance"]["fleet"]["members"].as_array().unwrap().len(),
            4
        );
    }

    // New sessions spread over the appliances; each is used through its own.
    let mut sessions: Vec<(String, String, String)> = Vec::new(); // (token, appliance, id)
    for i in 0..6 {
        let t = if i % 2 == 0 { &alice } else { &bob };
        let (id, appliance) = f.new_session(t);
        use_session(&f, t, &appliance, &id);
        sessions.push((t.clone(), appliance, id));
    }
    let placed: BTreeSet<&str> = sessions.iter().map(|(_, a, _)| a.as_str()).collect();
    assert_eq!(
        placed.len(),
        3,
        "sessions spread over every appliance: {sessions:?}"
    );
    // A session exists on its appliance only: another one's route does not have it.
    let (t, a, id) = &sessions[0];
    let other = NAMES[..3].iter().find(|n| *n != a).unwrap();
    assert_eq!(f.session(t, other, id).0, 404);
    // The fleet's pinned route never moves: an unknown appliance is a clear 503.
    let (s, v) = f.session(t, "zigral-9", id);
    assert_eq!(
        (s, v["error"].as_str()),
        (503, Some("appliance_unavailable")),
        "{v}"
    );

    // What a person sees: the web app at the fleet's address (Playwright, ui/e2e/fleet.mjs):
    // one login, alice's sessions of every appliance in one list, a new session's page on its
    // appliance with the live view through the pinned route. Screenshots in target/ui-artifacts-fleet.
    let mine: Vec<Value> = sessions
        .iter()
        .filter(|(t, _, _)| *t == alice)
        .map(|(_, a, id)| json!({"id": id, "appliance": a}))
        .collect();
    let out = Command::new(std::env::var("ZIGRAL_NODE").unwrap_or_else(|_| "node".into()))
        .arg(zigral_tests::repo_root().join("ui/e2e/fleet.mjs"))
        .env("ZIGRAL_E2E_FLEET", format!("http://127.0.0.1:{}/", h.port))
        .env(
            "ZIGRAL_E2E_ARTIFACTS",
            zigral_tests::repo_root().join("target/ui-artifacts-fleet"),
        )
        .env("ZIGRAL_E2E_USER", "alice")
        .env("ZIGRAL_E2E_USER_PASSWORD", "alice-fleet-password")
        .env("ZIGRAL_E2E_SESSIONS", Value::from(mine).to_string())
        .output()
        .expect("run node ui/e2e/fleet.mjs (Node.js: scripts/install-deps.sh)");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("{said}");
    assert!(out.status.success(), "ui/e2e/fleet.mjs failed:\n{said}");

    // zigral-1 dies (its whole process tree, at once): only its sessions are lost.
    let victim = stacks.remove(&1).unwrap();
    for pid in procs::tree(victim.init.pid()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    drop(victim);
    await_state(&h, "be_pool", "zigral-1", "zigral-1 down", |op, _| op == 0);
    for (t, a, id) in &sessions {
        let (s, v) = f.session(t, a, id);
        if a == "zigral-1" {
            assert_eq!(
                (s, v["error"].as_str()),
                (503, Some("appliance_unavailable")),
                "{v}"
            );
            assert_eq!(v["appliance"], "zigral-1", "{v}");
        } else {
            assert_eq!(s, 200, "{a}: {v}");
        }
    }
    for _ in 0..4 {
        let (id, a) = f.new_session(&alice);
        assert_ne!(a, "zigral-1");
        sessions.push((alice.clone(), a, id));
    }

    // zigral-2 drains (its administrator says so, through its route): no new session goes
    // there, its existing ones go on.
    let (s, v) = f.call(
        "PUT",
        "/a/zigral-2/api/v1/admin/draining",
        Some(&root),
        Some(json!({"draining": true})),
    );
    assert_eq!(s, 200, "{v}");
    await_state(
        &h,
        "be_pool",
        "zigral-2",
        "zigral-2 drained by its agent",
        |_, admin| admin & 0x08 != 0,
    );
    for _ in 0..4 {
        let (id, a) = f.new_session(&bob);
        assert_eq!(a, "zigral-0", "only zigral-0 takes new work now");
        sessions.push((bob.clone(), a, id));
    }
    for (t, a, id) in sessions.iter().filter(|(_, a, _)| a == "zigral-2") {
        use_session(&f, t, a, id);
    }

    // zigral-3 joins: it takes new sessions.
    stacks.insert(3, start(3));
    up(&h, "zigral-3");
    let mut on3 = 0;
    for _ in 0..4 {
        let (id, a) = f.new_session(&alice);
        assert!(a == "zigral-0" || a == "zigral-3", "{a}");
        on3 += usize::from(a == "zigral-3");
        if a == "zigral-3" {
            use_session(&f, &alice, &a, &id);
        }
    }
    assert!(on3 > 0, "the added appliance took no new session");

    // The load run: concurrent sessions created and driven from the fleet address.
    let n = 12;
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let requests = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|sc| {
        for i in 0..n {
            let (errors, requests, f) = (errors.clone(), requests.clone(), &f);
            let t = if i % 2 == 0 {
                alice.clone()
            } else {
                bob.clone()
            };
            sc.spawn(move || {
                let fail = |m: String| errors.lock().unwrap().push(m);
                let (s, v) = f.call("POST", "/api/v1/sessions", Some(&t), Some(json!({"title": "load"})));
                requests.fetch_add(1, Ordering::Relaxed);
                if s != 201 {
                    return fail(format!("create: {s} {v}"));
                }
                let (id, a) = (v["id"].as_str().unwrap(), v["appliance"].as_str().unwrap());
                for k in 0..5 {
                    let (s, v) = f.call(
                        "POST",
                        &format!("/a/{a}/api/v1/sessions/{id}/messages"),
                        Some(&t),
                        Some(json!({"role": "user", "content": [{"type": "text", "text": format!("step {k}")}]})),
                    );
                    let (s2, v2) = f.session(&t, a, id);
                    requests.fetch_add(2, Ordering::Relaxed);
                    if s != 201 || s2 != 200 || v2["appliance"] != a {
                        fail(format!("{a}/{id} step {k}: {s} {v} / {s2} {v2}"));
                    }
                }
                let (s, v) = f.call("POST", &format!("/a/{a}/api/v1/sessions/{id}/actions"), Some(&t),
                    Some(json!({"actions": [{"action": "page_text"}]})));
                requests.fetch_add(1, Ordering::Relaxed);
                if s != 200 || v["ok"] != true {
                    fail(format!("{a}/{id} drive: {s} {v}"));
                }
            });
        }
    });
    let errors = errors.lock().unwrap();
    println!("fleet_load_sessions: {n}");
    println!("fleet_load_requests: {}", requests.load(Ordering::Relaxed));
    println!("fleet_load_routing_errors: {}", errors.len());
    assert!(errors.is_empty(), "routing errors: {errors:#?}");
    drop(stacks);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory for HAProxy's files.
fn tempfile_dir(tmp: &std::path::Path) -> std::path::PathBuf {
    let d = tmp.join(format!("fleet-haproxy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
