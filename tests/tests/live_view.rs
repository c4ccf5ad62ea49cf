//! The live-view switch, whole stack (config/host.toml under zigral-init, as root): the owner
//! of a managed desktop turns its live view off through `PUT /api/v1/desktops/{n}/live-view`
//! and the real proxy (another process, sharing only the state dir) closes the open viewer and
//! refuses a new one; another user cannot switch it, a bad body changes nothing, an
//! administrator may switch it, and a desktop destroyed and handed out again starts with its
//! live view on.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zigral_tests::api::{events, login_as, next_text, open_viewer};
use zigral_tests::stack::{ADMIN_PW, Stack};
use zigral_tests::wait_for;

/// A view token for desktop `n` (its owner or an admin).
fn view_token(st: &Stack, who: &str, n: u32) -> String {
    let v = st.ok(
        "POST",
        &format!("/api/v1/desktops/{n}/view-token"),
        who,
        Some(json!({})),
    );
    v["token"].as_str().unwrap().to_owned()
}

/// A live viewer of the desktop `token` is for: the WebSocket after the RFB greeting (retried
/// while the desktop's VNC server is still starting).
fn viewer(st: &Stack, token: &str) -> TcpStream {
    wait_for(Duration::from_secs(60), "a viewer to connect", || {
        let (s, greeting) = open_viewer(st.proxy, token).ok()?;
        assert!(greeting.starts_with("RFB 003."), "{greeting:?}");
        Some(s)
    })
}

/// Reads server frames until the close frame (the socket's read timeout bounds the wait);
/// returns its code and reason.
fn close_frame(s: &mut TcpStream) -> (u16, String) {
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h)
            .expect("a frame before the read timeout");
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            let mut e = [0u8; 2];
            s.read_exact(&mut e).unwrap();
            len = u64::from(u16::from_be_bytes(e));
        } else if len == 127 {
            let mut e = [0u8; 8];
            s.read_exact(&mut e).unwrap();
            len = u64::from_be_bytes(e);
        }
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).unwrap();
        if h[0] & 0x0f == 0x8 {
            assert!(payload.len() >= 2, "close frame without a code");
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
        }
    }
}

/// A WebSocket attempt the proxy answers without upgrading: its status and body.
fn refusal(port: u16, token: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /websockify?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
            assert_ne!(status, 101, "the proxy accepted the viewer");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap();
            if got.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&got[end + 4..end + 4 + len]);
                return (status, body.trim_end().to_owned());
            }
        }
        let n = s.read(&mut b).unwrap();
        assert!(n > 0, "eof before the whole answer");
        got.extend_from_slice(&b[..n]);
    }
}

/// The next `desktop.live_view` event on an events websocket.
fn next_switch(ws: &mut TcpStream) -> Value {
    loop {
        let v: Value = serde_json::from_str(&next_text(ws).unwrap()).unwrap();
        if v["kind"] == "desktop.live_view" {
            return v;
        }
    }
}

#[test]
fn the_live_view_switch_closes_an_open_novnc_connection_and_refuses_a_new_one() {
    let st = Stack::start(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
        "liveview",
        2,
        &[
            ("ZIGRAL_DESKTOP_POLICY", "per-user"),
            ("ZIGRAL_WARM_POOL", "0"),
            ("ZIGRAL_DESKTOP_IDLE_SECS", "0"),
        ],
    );
    let admin = login_as(st.control, "admin", ADMIN_PW);
    let (alice_id, alice) = st.user(&admin, "alice");
    let (_, bob) = st.user(&admin, "bob");
    let (_, n, _) = st.session(&alice);
    let path = format!("/api/v1/desktops/{n}/live-view");
    let file = st.state.join("liveview").join(n.to_string());
    let mut alice_events = events(st.control, &alice).unwrap();
    alice_events
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let token = view_token(&st, &alice, n);
    let mut live = viewer(&st, &token);
    live.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        st.ok("GET", &path, &alice, None),
        json!({"desktop": n, "enabled": true})
    );

    // Bob may neither read nor switch alice's desktop; a bad body changes nothing.
    for (m, body) in [("GET", None), ("PUT", Some(json!({"enabled": false})))] {
        let (s, v) = st.api(m, &path, &bob, body);
        assert_eq!(s, 404, "{m} by bob: {v}");
    }
    let (s, v) = st.api("PUT", &path, &alice, Some(json!({"enabled": "off"})));
    assert_eq!(s, 422, "{v}");
    let (s, v) = st.api(
        "PUT",
        &path,
        &alice,
        Some(json!({"enabled": false, "x": 1})),
    );
    assert_eq!(s, 422, "{v}");
    assert!(!file.exists(), "a refused request wrote the switch");

    // The owner turns it off: the open viewer gets a close frame within a second.
    let t0 = Instant::now();
    assert_eq!(
        st.ok("PUT", &path, &alice, Some(json!({"enabled": false}))),
        json!({"desktop": n, "enabled": false})
    );
    let (code, reason) = close_frame(&mut live);
    let took = t0.elapsed();
    assert_eq!((code, reason.as_str()), (1008, "live view turned off"));
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    let ev = next_switch(&mut alice_events);
    assert_eq!(
        (
            &ev["data"]["desktop"],
            &ev["data"]["enabled"],
            &ev["data"]["by"]
        ),
        (&json!(n), &json!(false), &json!(alice_id)),
        "{ev}"
    );
    assert!(file.exists());

    // A new viewer is refused, even with a fresh token.
    let (status, body) = refusal(st.proxy, &view_token(&st, &alice, n));
    assert_eq!(status, 403, "{body}");
    assert!(body.starts_with("live_view_off"), "{body}");
    assert_eq!(
        st.ok("GET", &path, &alice, None),
        json!({"desktop": n, "enabled": false})
    );

    // An administrator may switch it too: on, and viewers connect again.
    assert_eq!(
        st.ok("PUT", &path, &admin, Some(json!({"enabled": true}))),
        json!({"desktop": n, "enabled": true})
    );
    assert!(!file.exists());
    drop(viewer(&st, &token));
    let ev = next_switch(&mut alice_events);
    assert_eq!(ev["data"]["enabled"], true, "{ev}");

    // Off again, then the desktop is destroyed: its next tenancy starts with the view on.
    st.ok("PUT", &path, &alice, Some(json!({"enabled": false})));
    assert!(file.exists());
    let (s, v) = st.api("DELETE", &format!("/api/v1/desktops/{n}"), &alice, None);
    assert_eq!(s, 204, "{v}");
    assert!(!file.exists(), "the destroyed desktop kept its switch");
    let (_, n2, _) = st.session(&alice);
    assert_eq!(
        st.ok(
            "GET",
            &format!("/api/v1/desktops/{n2}/live-view"),
            &alice,
            None
        ),
        json!({"desktop": n2, "enabled": true})
    );
    drop(viewer(&st, &view_token(&st, &alice, n2)));

    let audit = st.ok("GET", "/api/v1/admin/audit?limit=1000", &admin, None);
    let switches: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "desktop.live_view")
        .collect();
    assert_eq!(switches.len(), 3, "{switches:?}");
    assert_eq!(
        switches
            .iter()
            .filter(|a| a["actor"] == format!("user:{alice_id}"))
            .count(),
        2
    );
}
