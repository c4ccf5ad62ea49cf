//! The default host-mode stack (config/host.toml under zigral-init, as `make run` starts it)
//! comes up for real: the X display accepts a connection, x11vnc answers the RFB handshake,
//! Chromium's DevTools answers /json/version, the control plane is ready; a user logs in,
//! creates a session, gets a viewer token and reaches the desktop's VNC server through the
//! proxy, and drives it through the action API; SIGTERM stops all of it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use zigral_tests::api::{create_session, json_ok, login, rfb_greeting, view_token};
use zigral_tests::{
    Proc, bin, claim_displays, free_port, free_port_range, http_get, repo_root, wait_for,
};

fn call(sock: &Path, req: &str) -> Option<Value> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("{req}\n").as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

/// The X11 setup reply's status for a connection presenting `cookie` (MIT-MAGIC-COOKIE-1, or
/// none when empty): 1 = accepted, 0 = refused.
fn x11_setup_status(display: u32, cookie: &[u8]) -> Option<u8> {
    let mut s = UnixStream::connect(format!("/tmp/.X11-unix/X{display}")).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let name: &[u8] = if cookie.is_empty() {
        b""
    } else {
        b"MIT-MAGIC-COOKIE-1"
    };
    let pad = |n: usize| (4 - n % 4) % 4;
    let mut setup = vec![b'l', 0, 11, 0, 0, 0];
    setup.extend_from_slice(&(name.len() as u16).to_le_bytes());
    setup.extend_from_slice(&(cookie.len() as u16).to_le_bytes());
    setup.extend_from_slice(&[0, 0]);
    setup.extend_from_slice(name);
    setup.extend(std::iter::repeat_n(0u8, pad(name.len())));
    setup.extend_from_slice(cookie);
    setup.extend(std::iter::repeat_n(0u8, pad(cookie.len())));
    let mut reply = [0u8; 8];
    s.write_all(&setup).ok()?;
    s.read_exact(&mut reply).ok()?;
    Some(reply[0])
}

/// The 16-byte cookie zigral-init wrote for desktop 0 (one FamilyWild entry: 2 bytes family,
/// then address, number, name and data, each with a big-endian u16 length).
fn desktop_cookie(state: &Path) -> Vec<u8> {
    let data = std::fs::read(state.join("desktops/0/Xauthority")).expect("desktop 0's Xauthority");
    let mut pos = 2;
    let mut field = || {
        let n = u16::from_be_bytes([data[pos], data[pos + 1]]) as usize;
        let f = data[pos + 2..pos + 2 + n].to_vec();
        pos += 2 + n;
        f
    };
    let (_addr, _num, name) = (field(), field(), field());
    assert_eq!(name, b"MIT-MAGIC-COOKIE-1");
    field()
}

#[test]
fn default_host_stack_comes_up_and_stops_cleanly() {
    // Room for two desktops: the boot desktop joins the warm pool, the session takes it and
    // the pool refills with desktop 1.
    let claim = claim_displays(2);
    let (d, vnc, cdp) = (claim.n, free_port_range(2), free_port_range(2));
    let (proxy, control) = (free_port(), free_port());
    let password = "stack-test-admin-pw";
    let state =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("stack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let log = std::fs::File::create(state.with_extension("log")).unwrap();
    let mut cmd = Command::new(bin("zigral-init"));
    cmd.arg("run")
        .arg("--config")
        .arg(repo_root().join("config/host.toml"))
        .arg("--state-dir")
        .arg(&state)
        // The same overrides `make run` users set to run beside another X server.
        .env("ZIGRAL_DISPLAY_BASE", d.to_string())
        .env("ZIGRAL_VNC_BASE", vnc.to_string())
        .env("ZIGRAL_CDP_BASE", cdp.to_string())
        .env("ZIGRAL_PROXY_PORT", proxy.to_string())
        .env("ZIGRAL_CONTROL_PORT", control.to_string())
        .env("ZIGRAL_UI_DIR", repo_root().join("ui/dist"))
        .env("ZIGRAL_ADMIN_PASSWORD", password)
        .env("ZIGRAL_MAX_DESKTOPS", "2")
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut init = Proc::spawn(cmd);
    let output = || std::fs::read_to_string(state.with_extension("log")).unwrap_or_default();
    let sock = state.join("init.sock");
    let t0 = Instant::now();
    let st = wait_for(Duration::from_secs(120), "all services ready", || {
        let st = call(&sock, r#"{"cmd":"status"}"#)?;
        let list = st["result"]["services"].as_array()?.clone();
        // Everything is up once each long-running service is ready and the one-shot
        // viewer-url has printed its link and finished.
        let up = list.iter().all(|s| {
            s["state"] == "ready" || (s["name"] == "viewer-url" && s["state"] == "stopped")
        });
        (list.len() == 6 && up).then_some(list)
    });
    let mut names: Vec<&str> = st.iter().map(|s| s["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "chromium@0",
            "control",
            "proxy",
            "viewer-url",
            "x11vnc@0",
            "xvfb@0"
        ]
    );
    eprintln!("stack ready in {:?}", t0.elapsed());

    // The display takes its desktop's cookie, and nobody without it.
    let cookie = desktop_cookie(&state);
    assert_eq!(
        x11_setup_status(d, &cookie),
        Some(1),
        "X display :{d} refuses its cookie"
    );
    assert_eq!(
        x11_setup_status(d, b""),
        Some(0),
        "X display :{d} open without a cookie"
    );
    assert_eq!(
        x11_setup_status(d, &[7u8; 16]),
        Some(0),
        "X display :{d} takes any cookie"
    );
    let mut s = TcpStream::connect(("127.0.0.1", vnc)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut banner = [0u8; 12];
    s.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"RFB 003.008\n");
    drop(s);
    let (code, body) = http_get(cdp, "/json/version").unwrap();
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["Browser"].as_str().unwrap().contains("Chrome"), "{body}");
    assert!(
        v["webSocketDebuggerUrl"]
            .as_str()
            .unwrap()
            .starts_with("ws://127.0.0.1:")
    );
    // The ready banner names where things run, and the one-shot printed a viewer link.
    let out = output();
    assert!(out.contains(&format!("X display :{d}")), "{out}");
    assert!(out.contains(&format!("127.0.0.1:{vnc}")), "{out}");
    assert!(
        out.contains(&format!("[viewer-url] http://127.0.0.1:{proxy}/?token=v1.")),
        "{out}"
    );
    // The configured admin password is never printed or logged.
    assert!(
        !out.contains(password),
        "admin password in the console output"
    );
    let logs = std::fs::read_dir(state.join("logs")).unwrap();
    for f in logs.flatten() {
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        assert!(!text.contains(password), "admin password in {:?}", f.path());
    }

    // A person's path: log in, create a session, watch the desktop through the proxy.
    let token = login(control, password);
    let session = create_session(control, &token, "stack");
    let viewer = view_token(control, &token, &session);
    let greeting = wait_for(
        Duration::from_secs(30),
        "RFB greeting via the proxy",
        || rfb_greeting(proxy, &viewer).ok(),
    );
    assert_eq!(greeting, "RFB 003.008\n");
    // A forged token is refused before anything reaches x11vnc.
    assert!(rfb_greeting(proxy, "v1.e30.AAAA").is_err());

    // An agent's path: a click and a screenshot through the action API, logged.
    let r = json_ok(
        control,
        "POST",
        &format!("/api/v1/sessions/{session}/actions"),
        Some(&token),
        Some(&serde_json::json!({"actions": [
            {"action": "left_click", "x": 640, "y": 400},
            {"action": "screenshot"}
        ]})),
    );
    assert_eq!(r["ok"], true, "{r}");
    let log = json_ok(
        control,
        "GET",
        &format!("/api/v1/sessions/{session}/actions"),
        Some(&token),
        None,
    );
    assert!(log.to_string().contains("left_click"), "{log}");

    let pids: Vec<i32> = st
        .iter()
        .filter_map(|s| s["pid"].as_i64())
        .map(|p| p as i32)
        .collect();
    init.signal(nix::sys::signal::Signal::SIGTERM);
    let status = init
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("zigral-init did not stop:\n{}", output()));
    assert_eq!(status.code(), Some(0), "{}", output());
    for p in pids {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "pid {p} survived"
        );
    }
    assert_eq!(
        x11_setup_status(d, &cookie),
        None,
        "X display :{d} still answers"
    );
    assert!(!zigral_tests::tcp_open(cdp));
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_file(state.with_extension("log"));
}
