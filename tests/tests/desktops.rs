//! Desktops owned by the control plane, whole stack (config/host.toml under zigral-init, as
//! root, as `make run` starts it): each user's session gets a desktop of its own, created on
//! demand; two users drive theirs at once and neither reaches the other's (API, proxy, Unix
//! user); quotas refuse with the limit named; destroyed desktops leave no process, file or
//! working token behind; idle desktops go; a persistent profile keeps its cookies (session
//! cookies too) across a kill -9 of Chrome and across desktops.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zigral_tests::api::{events, http, login_as, next_text, open_viewer, rfb_greeting};
use zigral_tests::procs::{tree, uid_of, uid_of_pid};
use zigral_tests::stack::{ADMIN_PW, Stack, pooled_ready};
use zigral_tests::wait_for;

/// Runs `sh -c script` as `user`; true when it exits 0.
fn as_user(user: &str, script: &str) -> bool {
    Command::new("runuser")
        .args(["-u", user, "--", "sh", "-c", script])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// A tiny HTTP server for Chrome: `/pad` is an editable page, `/set` sets a session cookie
/// and a persistent one, `/show` prints `document.cookie`.
fn page_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || serve_page(c));
        }
    });
    port
}

fn serve_page(mut c: TcpStream) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0u8; 4096];
    let n = c.read(&mut buf).unwrap_or(0);
    let req = String::from_utf8_lossy(&buf[..n]);
    let path = req.split_whitespace().nth(1).unwrap_or("/");
    let (extra, body) = match path {
        "/pad" => (
            "",
            "<html><head><title>pad-ready</title></head><body>\
             <input id=t style='font-size:40px;width:1000px;height:200px' \
             oninput='document.title = \"typed:\" + this.value'></body></html>",
        ),
        "/set" => (
            "Set-Cookie: sess=session-cookie; Path=/\r\nSet-Cookie: keep=persistent-cookie; Max-Age=86400; Path=/\r\n",
            "<html><body>cookies set</body></html>",
        ),
        _ => (
            "",
            "<html><body><p id=c></p><script>document.getElementById('c').textContent = \
             'cookies[' + document.cookie + ']'</script></body></html>",
        ),
    };
    let _ = write!(
        c,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
}

#[test]
fn two_users_get_their_own_desktops_and_nothing_of_each_other() {
    let st = Stack::start(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
        "iso",
        3,
        &[
            ("ZIGRAL_DESKTOP_POLICY", "per-session"),
            ("ZIGRAL_MAX_DESKTOPS_PER_USER", "1"),
            ("ZIGRAL_WARM_POOL", "1"),
            ("ZIGRAL_DESKTOP_IDLE_SECS", "0"),
        ],
    );
    let admin = login_as(st.control, "admin", ADMIN_PW);
    // The boot desktop joins the warm pool.
    let list = st.desktops_when(&admin, "one ready pool desktop", |l| {
        l.len() == 1 && pooled_ready(l).len() == 1
    });
    // Uids of this stack's processes (other stacks may run desktops with the same numbers).
    let stack_uids = || -> BTreeSet<u32> {
        tree(st.init.pid())
            .into_iter()
            .filter_map(uid_of_pid)
            .collect()
    };
    let baseline_uids = stack_uids();
    let pool0 = pooled_ready(&list)[0];
    let pages = page_server();

    let (_alice_id, alice) = st.user(&admin, "alice");
    let (bob_id, bob) = st.user(&admin, "bob");
    let (carol_id, carol) = st.user(&admin, "carol");
    let (_, dave) = st.user(&admin, "dave");
    let (sa, na, warm_secs) = st.session(&alice);
    assert_eq!(na, pool0, "alice got the warm desktop");
    eprintln!("session from the warm pool: {warm_secs:.3} s");
    // The pool refills in the background; bob gets the next warm desktop.
    st.desktops_when(&admin, "the pool refilled", |l| pooled_ready(l).len() == 1);
    let (sb, nb, _) = st.session(&bob);
    assert_ne!(na, nb, "two users share a desktop");

    // Both type at the same time, each into their own Chrome (the page echoes the input's
    // value into its title).
    for (tok, sid) in [(&alice, &sa), (&bob, &sb)] {
        st.actions(
            tok,
            sid,
            json!([
                {"action": "navigate", "url": format!("http://127.0.0.1:{pages}/pad")},
                {"action": "wait_for_load"},
            ]),
        );
        wait_for(Duration::from_secs(20), "the pad page", || {
            st.page_text(tok, sid).contains("pad-ready").then_some(())
        });
    }
    std::thread::scope(|s| {
        for (tok, sid, text) in [
            (&alice, &sa, "alice-typed-this"),
            (&bob, &sb, "bob-typed-that"),
        ] {
            let st = &st;
            s.spawn(move || {
                st.actions(
                    tok,
                    sid,
                    json!([
                        {"action": "left_click", "x": 400, "y": 200},
                        {"action": "type", "text": text},
                    ]),
                );
            });
        }
    });
    // Keystrokes reach Chrome asynchronously: wait until each page shows its own text.
    for (tok, sid, mine, other) in [
        (&alice, &sa, "typed:alice-typed-this", "bob-typed"),
        (&bob, &sb, "typed:bob-typed-that", "alice-typed"),
    ] {
        let text = wait_for(Duration::from_secs(20), mine, || {
            let t = st.page_text(tok, sid);
            t.contains(mine).then_some(t)
        });
        assert!(!text.contains(other), "{text}");
    }

    // Bob reaches nothing of alice's: every session route and every desktop route.
    for (m, p, body) in [
        ("GET", format!("/api/v1/sessions/{sa}"), None),
        (
            "POST",
            format!("/api/v1/sessions/{sa}/actions"),
            Some(json!({"actions": [{"action": "screenshot"}]})),
        ),
        ("GET", format!("/api/v1/sessions/{sa}/screenshot"), None),
        ("GET", format!("/api/v1/sessions/{sa}/downloads"), None),
        ("GET", format!("/api/v1/sessions/{sa}/checkpoints"), None),
        (
            "POST",
            format!("/api/v1/sessions/{sa}/checkpoints"),
            Some(json!({"label": "x"})),
        ),
        (
            "POST",
            format!("/api/v1/sessions/{sa}/view-token"),
            Some(json!({})),
        ),
        ("DELETE", format!("/api/v1/sessions/{sa}"), None),
        ("GET", format!("/api/v1/desktops/{na}"), None),
        (
            "POST",
            format!("/api/v1/desktops/{na}/view-token"),
            Some(json!({})),
        ),
        ("DELETE", format!("/api/v1/desktops/{na}"), None),
        (
            "PUT",
            format!("/api/v1/desktops/{na}/limits"),
            Some(json!({"pids": 100})),
        ),
    ] {
        let (s, v) = st.api(m, &p, &bob, body);
        assert!(s == 403 || s == 404, "bob {m} {p} -> {s} {v}");
    }
    let mine = st.ok("GET", "/api/v1/desktops", &bob, None);
    let ns: Vec<u64> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, vec![u64::from(nb)], "bob lists only his desktop");

    // Through the proxy: alice's token opens her desktop; bob's token cannot be pointed at it.
    let ta_tok = st.ok(
        "POST",
        &format!("/api/v1/sessions/{sa}/view-token"),
        &alice,
        Some(json!({})),
    );
    let alice_view = ta_tok["token"].as_str().unwrap().to_owned();
    assert_eq!(
        rfb_greeting(st.proxy, &alice_view).unwrap(),
        "RFB 003.008\n"
    );
    let tb_tok = st.ok(
        "POST",
        &format!("/api/v1/desktops/{nb}/view-token"),
        &bob,
        Some(json!({})),
    );
    let bob_view = tb_tok["token"].as_str().unwrap();
    assert!(rfb_greeting(st.proxy, &format!("{bob_view}&desktop={na}")).is_err());

    // As desktop B's Unix user: A's cookie, profile, VNC and DevTools are out of reach.
    let ub = format!("zigral-d{nb}");
    let sa_dir = st.state.join("desktops").join(na.to_string());
    assert!(as_user(&ub, "true"), "runuser works");
    assert!(!as_user(
        &ub,
        &format!("cat {}/Xauthority", sa_dir.display())
    ));
    assert!(!as_user(&ub, &format!("ls {}/chrome", sa_dir.display())));
    assert!(!as_user(&ub, &format!("ls {}/downloads", sa_dir.display())));
    assert!(!as_user(
        &ub,
        &format!("xdpyinfo -display :{}", st.display_base + na)
    ));
    for port in [st.vnc_base + na as u16, st.cdp_base + na as u16] {
        assert!(
            !as_user(&ub, &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")),
            "{ub} reached port {port}"
        );
    }

    // Quotas: one desktop per user, three on the appliance.
    let (s, v) = st.api("POST", "/api/v1/sessions", &alice, Some(json!({})));
    assert_eq!(s, 429, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("max_desktops_per_user"),
        "{v}"
    );
    let (sc, _, _) = st.session(&carol);
    let (s, v) = st.api("POST", "/api/v1/sessions", &dave, Some(json!({})));
    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("max_desktops"),
        "{v}"
    );
    let listed = st.ok("GET", "/api/v1/desktops", &admin, None);
    for d in listed.as_array().unwrap() {
        assert!(
            d["usage"]["memory_bytes"].as_u64().unwrap_or(0) > 0,
            "no memory figure: {d}"
        );
        assert!(d["tasks"].as_u64().unwrap_or(0) > 0, "no task count: {d}");
    }

    // A control-plane crash loses no desktop: after kill -9 and its restart each session
    // keeps its desktop (alice's text is still on her screen).
    let control_pid = |s: &Value| {
        s["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "control")
            .and_then(|x| x["pid"].as_i64())
    };
    let before = control_pid(&st.init_status()).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(Duration::from_secs(60), "the control plane back", || {
        let s = st.init_status();
        let svc = s["services"]
            .as_array()?
            .iter()
            .find(|x| x["name"] == "control")?
            .clone();
        (svc["state"] == "ready" && control_pid(&s) != Some(before)).then_some(())
    });
    let v = st.ok("GET", &format!("/api/v1/sessions/{sa}"), &alice, None);
    assert_eq!(v["desktop"], na, "{v}");
    let text = st.page_text(&alice, &sa);
    assert!(
        text.contains("typed:alice-typed-this"),
        "after a control-plane restart: {text}"
    );
    let (s, _) = st.api("GET", &format!("/api/v1/desktops/{na}"), &bob, None);
    assert_eq!(s, 404);

    // An admin changes a running desktop's limits: recorded and in zigral-init's status.
    let v = st.ok(
        "PUT",
        &format!("/api/v1/desktops/{nb}/limits"),
        &admin,
        Some(json!({"cpus": 0.5, "pids": 256})),
    );
    assert_eq!(
        (v["millicpus"].as_u64(), v["pids"].as_u64()),
        (Some(500), Some(256)),
        "{v}"
    );
    let g = st.init_status()["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == format!("desktop@{nb}"))
        .unwrap()
        .clone();
    assert_eq!(g["limits"]["millicpus"], 500, "{g}");
    assert_eq!(g["limits"]["pids"], 256, "{g}");
    let (s, _) = st.api(
        "PUT",
        &format!("/api/v1/desktops/{nb}/limits"),
        &admin,
        Some(json!({"pids": 3})),
    );
    assert_eq!(s, 422);

    // A password reset ends the user's logins; the new password works.
    let (s, _) = st.api(
        "POST",
        &format!("/api/v1/users/{bob_id}/password"),
        &admin,
        Some(json!({"password": "bob-new-password"})),
    );
    assert_eq!(s, 204);
    let (s, _) = st.api("GET", "/api/v1/sessions", &bob, None);
    assert_eq!(s, 401, "bob's old login still works");
    let bob = login_as(st.control, "bob", "bob-new-password");

    // A disabled user: no credential works, their desktop is destroyed.
    let nc = st.ok("GET", &format!("/api/v1/sessions/{sc}"), &carol, None)["desktop"]
        .as_u64()
        .unwrap();
    st.ok(
        "PATCH",
        &format!("/api/v1/users/{carol_id}"),
        &admin,
        Some(json!({"disabled": true})),
    );
    let (s, v) = st.api("GET", "/api/v1/sessions", &carol, None);
    assert_eq!(s, 403, "{v}");
    assert!(v["message"].as_str().unwrap().contains("disabled"), "{v}");
    let (s, _) = http(
        st.control,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({"username": "carol", "password": "carol-password"})),
    )
    .unwrap();
    assert_eq!(s, 403);
    let list = st.ok("GET", "/api/v1/desktops", &admin, None);
    assert!(
        !list
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["n"] == nc && d["owner"] == carol_id.as_str()),
        "a disabled user's desktop remains: {list}"
    );

    // Ending the sessions destroys their desktops: tokens die, processes and files go.
    for (tok, sid) in [(&alice, &sa), (&bob, &sb), (&admin, &sc)] {
        let (s, v) = st.api("DELETE", &format!("/api/v1/sessions/{sid}"), tok, None);
        assert_eq!(s, 204, "{v}");
    }
    assert!(
        rfb_greeting(st.proxy, &alice_view).is_err(),
        "a token of a destroyed desktop still opens a viewer"
    );
    let list = st.desktops_when(&admin, "only the refilled pool desktop", |l| {
        l.len() == 1 && pooled_ready(l).len() == 1
    });
    let pool = pooled_ready(&list)[0];
    let dirs: BTreeSet<String> = std::fs::read_dir(st.state.join("desktops"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        dirs,
        BTreeSet::from([pool.to_string()]),
        "desktop dirs left behind"
    );
    let leases: Vec<_> = std::fs::read_dir(st.state.join("leases"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leases.is_empty(), "leases left: {leases:?}");
    let pool_uid = uid_of(&format!("zigral-d{pool}"));
    let now = stack_uids();
    for n in [na, nb] {
        let Some(uid) = uid_of(&format!("zigral-d{n}")) else {
            continue;
        };
        if Some(uid) != pool_uid {
            assert!(
                !now.contains(&uid),
                "a process of destroyed desktop {n} survived"
            );
        }
    }
    let new_uids: Vec<&u32> = now
        .difference(&baseline_uids)
        .filter(|u| Some(**u) != pool_uid)
        .collect();
    assert!(
        new_uids.is_empty(),
        "processes of new users remain: {new_uids:?}"
    );
}

#[test]
fn idle_desktops_go_and_persistent_profiles_keep_their_cookies() {
    let st = Stack::start(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
        "persist",
        3,
        &[
            ("ZIGRAL_DESKTOP_POLICY", "per-user"),
            ("ZIGRAL_WARM_POOL", "0"),
            ("ZIGRAL_DESKTOP_IDLE_SECS", "4"),
        ],
    );
    let admin = login_as(st.control, "admin", ADMIN_PW);
    // No pool: the boot desktop is destroyed at start.
    st.desktops_when(&admin, "no desktops", <[Value]>::is_empty);
    let mut ev = events(st.control, &admin).unwrap();
    let pages = page_server();
    let (erin_id, erin) = st.user(&admin, "erin");
    let v = st.ok(
        "PATCH",
        &format!("/api/v1/users/{erin_id}"),
        &admin,
        Some(json!({"persistent_profile": true})),
    );
    assert_eq!(v["persistent_profile"], true);
    let (s1, n1, cold) = st.session(&erin);
    eprintln!("cold session with a persistent profile: {cold:.3} s");
    st.actions(
        &erin,
        &s1,
        json!([{"action": "navigate", "url": format!("http://127.0.0.1:{pages}/set")}]),
    );
    st.actions(
        &erin,
        &s1,
        json!([{"action": "navigate", "url": format!("http://127.0.0.1:{pages}/show")}]),
    );
    let both = "cookies[sess=session-cookie; keep=persistent-cookie]";
    assert!(st.page_text(&erin, &s1).contains(both));

    // A live viewer keeps the desktop from going idle while Chrome writes its cookie file.
    let vt = st.ok(
        "POST",
        &format!("/api/v1/sessions/{s1}/view-token"),
        &erin,
        Some(json!({})),
    );
    let (viewer, _) = open_viewer(st.proxy, vt["token"].as_str().unwrap()).unwrap();
    let cookies = st
        .state
        .join("profiles")
        .join(&erin_id)
        .join("chrome/Default/Cookies");
    let t0 = Instant::now();
    wait_for(
        Duration::from_secs(90),
        "Chrome to commit its cookies",
        || {
            let bytes = std::fs::read(&cookies).ok()?;
            bytes.windows(4).any(|w| w == b"sess").then_some(())
        },
    );
    eprintln!("cookie file committed after {:?}", t0.elapsed());

    // kill -9 of Chrome: zigral-init restarts it; both cookies are back.
    let status = st.init_status();
    let chrome = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == format!("chromium@{n1}"))
        .unwrap()
        .clone();
    let pid = chrome["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(
        Duration::from_secs(60),
        "Chrome restarted and ready",
        || {
            let s = st.init_status();
            let c = s["services"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == format!("chromium@{n1}"))?
                .clone();
            (c["state"] == "ready" && c["pid"].as_i64() != Some(i64::from(pid))).then_some(())
        },
    );
    let text = wait_for(
        Duration::from_secs(30),
        "the page after Chrome's restart",
        || {
            let (s, v) = st.api(
                "POST",
                &format!("/api/v1/sessions/{s1}/actions"),
                &erin,
                Some(json!({"actions": [
                {"action": "navigate", "url": format!("http://127.0.0.1:{pages}/show")},
                {"action": "page_text"}]})),
            );
            (s == 200).then(|| v.to_string())
        },
    );
    assert!(text.contains(both), "after kill -9 of Chrome: {text}");
    drop(viewer);

    // Session end destroys the desktop; the profile stays and the next desktop has it.
    let (s, _) = st.api("DELETE", &format!("/api/v1/sessions/{s1}"), &erin, None);
    assert_eq!(s, 204);
    assert!(
        cookies.exists(),
        "the persistent profile went with the desktop"
    );
    st.desktops_when(&admin, "erin's desktop destroyed", <[Value]>::is_empty);
    let (s2, _n2, _) = st.session(&erin);
    st.actions(
        &erin,
        &s2,
        json!([{"action": "navigate", "url": format!("http://127.0.0.1:{pages}/show")}]),
    );
    let text = st.page_text(&erin, &s2);
    assert!(text.contains(both), "after session end: {text}");

    // Idle: no action, viewer or agent turn for 4 s destroys it; the session gets a new
    // desktop when it is used again.
    let t0 = Instant::now();
    st.desktops_when(&admin, "the idle desktop destroyed", <[Value]>::is_empty);
    eprintln!("idle desktop destroyed after {:?}", t0.elapsed());
    let again = st.actions(
        &erin,
        &s2,
        json!([
            {"action": "navigate", "url": format!("http://127.0.0.1:{pages}/show")},
            {"action": "page_text"},
        ]),
    );
    assert!(
        again.to_string().contains("keep=persistent-cookie"),
        "{again}"
    );
    let list = st.ok("GET", "/api/v1/desktops", &admin, None);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // The events websocket announced every state change, the idle destroy with its reason.
    let mut seen = Vec::new();
    let mut idle_reason = false;
    while !(idle_reason
        && seen
            .iter()
            .filter(|k: &&String| *k == "desktop.ready")
            .count()
            >= 3)
    {
        let text = next_text(&mut ev).unwrap();
        let e: Value = serde_json::from_str(&text).unwrap();
        let kind = e["kind"].as_str().unwrap_or_default().to_owned();
        if kind == "desktop.destroyed"
            && e["data"]["reason"]
                .as_str()
                .unwrap_or_default()
                .starts_with("idle")
        {
            idle_reason = true;
        }
        if kind.starts_with("desktop.") {
            seen.push(kind);
        }
    }
    for k in [
        "desktop.created",
        "desktop.ready",
        "desktop.destroying",
        "desktop.destroyed",
    ] {
        assert!(seen.iter().any(|s| s == k), "no {k} event in {seen:?}");
    }
}
