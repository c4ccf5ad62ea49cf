//! The desktop template with real Xvfb, x11vnc and Chromium from config/host.toml:
//! restart after kill -9, and spawn/destroy of desktop@1 over the control socket.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;

const READY: Duration = Duration::from_secs(90);

struct Ports {
    display: u32,
    vnc: u16,
    cdp: u16,
    _claim: zigral_tests::DisplayClaim,
}

fn ports(n: u16) -> Ports {
    let claim = zigral_tests::claim_displays(u32::from(n));
    Ports {
        display: claim.n,
        vnc: zigral_tests::free_port_range(n),
        cdp: zigral_tests::free_port_range(n),
        _claim: claim,
    }
}

fn start(dir: &Path, p: &Ports) -> Init {
    Init::start(
        dir,
        &repo_config("host.toml"),
        &[
            "--set",
            &format!("display_base={}", p.display),
            "--set",
            &format!("vnc_base={}", p.vnc),
            "--set",
            &format!("cdp_base={}", p.cdp),
            // host.toml also runs the proxy and the control plane: keep them off the default
            // ports so these tests run beside `make run` and each other.
            "--set",
            &format!("proxy_port={}", zigral_tests::free_port()),
            "--set",
            &format!("control_port={}", zigral_tests::free_port()),
            "--set",
            &format!(
                "ui_dir={}",
                zigral_tests::repo_root().join("ui/dist").display()
            ),
        ],
    )
}

fn rfb_banner(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect x11vnc");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 12];
    s.read_exact(&mut b).expect("RFB banner");
    String::from_utf8_lossy(&b).to_string()
}

fn cdp_ok(port: u16) -> bool {
    matches!(zigral_tests::http_get(port, "/json/version"), Ok((200, body)) if body.contains("\"Browser\""))
}

fn pid_of(init: &Init, name: &str) -> i32 {
    init.service(name)["pid"].as_i64().expect("pid") as i32
}

#[test]
fn kill_9_of_x11vnc_and_chromium_restarts_them_ready_again() {
    let p = ports(1);
    let dir = scratch("kill9");
    let mut init = start(&dir, &p);
    for s in ["xvfb@0", "x11vnc@0", "chromium@0"] {
        init.wait_state(s, &["ready"], READY);
    }
    assert_eq!(rfb_banner(p.vnc), "RFB 003.008\n");
    assert!(cdp_ok(p.cdp));

    for (svc, check) in [
        (
            "x11vnc@0",
            Box::new(|| rfb_banner(p.vnc) == "RFB 003.008\n") as Box<dyn Fn() -> bool>,
        ),
        ("chromium@0", Box::new(|| cdp_ok(p.cdp))),
    ] {
        let old = pid_of(&init, svc);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(old),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let s = zigral_tests::wait_for(READY, &format!("{svc} back"), || {
            let s = init.service(svc);
            (s["state"] == "ready" && s["pid"].as_i64() != Some(i64::from(old))).then_some(s)
        });
        assert_eq!(s["restarts"], 1, "{s}");
        assert_eq!(s["last_exit"], "signal 9 (SIGKILL)");
        assert!(check(), "{svc} not answering after restart");
        assert!(!alive(old));
    }
    // Xvfb was not disturbed.
    assert_eq!(init.service("xvfb@0")["restarts"], 0);

    // Killing the X server takes its clients down; all three come back, in order.
    let olds: Vec<i32> = ["xvfb@0", "x11vnc@0", "chromium@0"]
        .iter()
        .map(|s| pid_of(&init, s))
        .collect();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(olds[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for (svc, old) in ["xvfb@0", "x11vnc@0", "chromium@0"].iter().zip(&olds) {
        zigral_tests::wait_for(READY, &format!("{svc} back after Xvfb died"), || {
            let s = init.service(svc);
            (s["state"] == "ready" && s["pid"].as_i64() != Some(i64::from(*old))).then_some(())
        });
    }
    zigral_init::probe::x11_handshake(p.display).expect("X back");
    assert_eq!(rfb_banner(p.vnc), "RFB 003.008\n");
    assert!(cdp_ok(p.cdp));
    let pids: Vec<i32> = ["xvfb@0", "x11vnc@0", "chromium@0"]
        .iter()
        .map(|s| pid_of(&init, s))
        .collect();
    assert_eq!(init.terminate(Duration::from_secs(60)), Some(0));
    for pid in pids {
        assert!(!alive(pid), "{pid} survived");
    }
    assert!(pids_matching(&format!("--remote-debugging-port={}", p.cdp)).is_empty());
}

#[test]
fn spawn_and_destroy_desktop_1_over_the_control_socket() {
    let p = ports(2);
    let dir = scratch("spawn");
    let init = start(&dir, &p);
    init.wait_state("chromium@0", &["ready"], READY);

    let r = init
        .call(json!({"cmd":"spawn","template":"desktop","instance":"1"}))
        .unwrap();
    assert_eq!(r["group"], "desktop@1");
    assert_eq!(r["services"], json!(["xvfb@1", "x11vnc@1", "chromium@1"]));
    let e = init
        .call(json!({"cmd":"spawn","template":"desktop","instance":"1"}))
        .unwrap_err();
    assert!(e.contains("already exists"), "{e}");
    for s in ["xvfb@1", "x11vnc@1", "chromium@1"] {
        init.wait_state(s, &["ready"], READY);
    }
    // Desktop 1 lives on base+1 everywhere, with its own profile and download dir.
    zigral_init::probe::x11_handshake(p.display + 1).expect("X display of desktop 1");
    assert_eq!(rfb_banner(p.vnc + 1), "RFB 003.008\n");
    assert!(cdp_ok(p.cdp + 1));
    let prefs =
        std::fs::read_to_string(init.state.join("desktops/1/chrome/Default/Preferences")).unwrap();
    assert!(prefs.contains(&format!("{}/desktops/1/downloads", init.state.display())));
    assert!(init.state.join("desktops/1/downloads").is_dir());

    let pids: Vec<i32> = ["xvfb@1", "x11vnc@1", "chromium@1"]
        .iter()
        .map(|s| pid_of(&init, s))
        .collect();
    let chrome_tree = pids_matching(&format!("--remote-debugging-port={}", p.cdp + 1));
    assert!(!chrome_tree.is_empty());
    let r = init
        .call(json!({"cmd":"destroy","template":"desktop","instance":"1"}))
        .unwrap();
    assert_eq!(r["destroyed"], "desktop@1");
    // The reply comes once the processes are gone.
    for pid in pids.iter().chain(chrome_tree.iter()) {
        assert!(!alive(*pid), "{pid} still running after destroy");
    }
    assert!(!Path::new(&format!("/tmp/.X11-unix/X{}", p.display + 1)).exists());
    let names: Vec<String> = init.status()["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .filter(|n| n.contains('@'))
        .collect();
    assert_eq!(names, vec!["xvfb@0", "x11vnc@0", "chromium@0"]);
    // Desktop 0 was untouched.
    assert_eq!(init.service("chromium@0")["restarts"], 0);
    assert!(cdp_ok(p.cdp));
    let e = init
        .call(json!({"cmd":"destroy","template":"desktop","instance":"1"}))
        .unwrap_err();
    assert!(e.contains("no instance desktop@1"), "{e}");
}

/// Runs `script` with `sh -c` as `user` (with that user's groups); returns (success, output).
fn as_user(user: &str, script: &str) -> (bool, String) {
    let out = std::process::Command::new("runuser")
        .args(["-u", user, "--", "sh", "-c", script])
        .output()
        .expect("runuser (util-linux)");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn uid_of(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn uid_named(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap_or_else(|| panic!("no user {user}"))
        .uid
        .as_raw()
}

/// The X11 setup reply's first byte for a connection to `display` presenting `cookie`
/// (1 = accepted, 0 = refused).
fn x11_setup_as(user: &str, display: u32, xauthority: &Path) -> (bool, String) {
    as_user(
        user,
        &format!(
            "XAUTHORITY={} xdpyinfo -display :{display} | head -1",
            xauthority.display()
        ),
    )
}

/// Least privilege, as root in host mode: every desktop process runs as its desktop's own
/// user with Chromium's sandbox on, the proxy and the control plane as `zigral`, and a process
/// of desktop 0's user reaches neither the state dir's files, nor desktop 1's X display, VNC
/// or DevTools (nor its own DevTools: only the control plane drives Chrome).
#[test]
fn desktops_run_as_their_own_users_and_cannot_reach_each_other() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test checks the user switch zigral-init does as root: run it as root (make test does)"
    );
    let p = ports(2);
    let dir = scratch("privilege");
    let init = start(&dir, &p);
    init.wait_state("chromium@0", &["ready"], READY);
    init.wait_state("control", &["ready"], READY);
    init.call(json!({"cmd":"spawn","template":"desktop","instance":"1"}))
        .unwrap();
    for s in ["x11vnc@1", "chromium@1"] {
        init.wait_state(s, &["ready"], READY);
    }
    let (d0, d1, zigral) = (
        uid_named("zigral-d0"),
        uid_named("zigral-d1"),
        uid_named("zigral"),
    );
    assert!(d0 != 0 && d1 != 0 && zigral != 0 && d0 != d1 && d0 != zigral);

    // Who runs what.
    for (svc, uid) in [
        ("xvfb@0", d0),
        ("x11vnc@0", d0),
        ("chromium@0", d0),
        ("xvfb@1", d1),
        ("chromium@1", d1),
        ("proxy", zigral),
        ("control", zigral),
    ] {
        assert_eq!(
            uid_of(pid_of(&init, svc)),
            uid,
            "{svc} runs as the wrong user"
        );
    }
    let chrome_tree = pids_matching(&format!(
        "--user-data-dir={}",
        init.state.join("desktops/0/chrome").display()
    ));
    assert!(
        chrome_tree.len() >= 3,
        "Chromium's processes: {chrome_tree:?}"
    );
    let mut sandboxed_renderers = 0;
    for pid in &chrome_tree {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(!cmd.contains("--no-sandbox"), "{pid}: {cmd}");
        assert_ne!(uid_of(*pid), 0, "{pid} runs as root: {cmd}");
        if cmd.contains("--type=renderer") {
            let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            assert!(
                st.contains("Seccomp:\t2"),
                "renderer {pid} without seccomp-bpf:\n{st}"
            );
            sandboxed_renderers += 1;
        }
    }
    assert!(
        sandboxed_renderers > 0,
        "no renderer found in {chrome_tree:?}"
    );

    // The state dir: nothing of it is readable by a desktop user.
    let st = init.state.display().to_string();
    for f in ["zigral.redb", "proxy-signing.key", "logs/control.log"] {
        assert!(init.state.join(f).exists(), "{f} missing");
        let (ok, out) = as_user("zigral-d0", &format!("cat {st}/{f} > /dev/null"));
        assert!(!ok && out.contains("Permission denied"), "{f}: {out}");
    }
    let (ok, out) = as_user("zigral-d0", &format!("ls {st}"));
    assert!(!ok && out.contains("Permission denied"), "{out}");
    let (ok, out) = as_user(
        "zigral-d0",
        &format!("socat -T2 - UNIX-CONNECT:{st}/init.sock </dev/null"),
    );
    assert!(!ok && out.contains("Permission denied"), "init.sock: {out}");

    // X: desktop 0's cookie opens desktop 0 only; desktop 1's cookie is unreadable.
    let own = init.state.join("desktops/0/Xauthority");
    let (ok, out) = x11_setup_as("zigral-d0", p.display, &own);
    assert!(
        ok && out.contains(&format!(":{}", p.display)),
        "own display: {out}"
    );
    let (ok, out) = x11_setup_as("zigral-d0", p.display + 1, &own);
    assert!(
        !ok || !out.contains("name of display"),
        "desktop 1's X display: {out}"
    );
    let (ok, out) = as_user("zigral-d0", &format!("cat {st}/desktops/1/Xauthority"));
    assert!(!ok && out.contains("Permission denied"), "{out}");
    let (ok, out) = as_user("zigral-d0", &format!("ls {st}/desktops/1/chrome"));
    assert!(!ok && out.contains("Permission denied"), "{out}");

    // VNC and DevTools: refused to desktop users, open to root and to the control plane's user.
    for port in [p.vnc + 1, p.vnc] {
        let (ok, out) = as_user(
            "zigral-d0",
            &format!("timeout 5 socat -u TCP:127.0.0.1:{port} STDOUT | head -c 12"),
        );
        assert!(
            !out.contains("RFB"),
            "VNC {port} reached as zigral-d0: {ok} {out}"
        );
        let (_, out) = as_user(
            "zigral",
            &format!("timeout 5 socat -u TCP:127.0.0.1:{port} STDOUT | head -c 12"),
        );
        assert!(out.contains("RFB 003.008"), "VNC {port} as zigral: {out}");
    }
    for port in [p.cdp + 1, p.cdp] {
        let url = format!("http://127.0.0.1:{port}/json/version");
        let (ok, out) = as_user("zigral-d0", &format!("curl -sS -m 5 {url}"));
        assert!(
            !ok && !out.contains("Browser"),
            "DevTools {port} as zigral-d0: {out}"
        );
        let (ok, out) = as_user("zigral", &format!("curl -sS -m 5 {url}"));
        assert!(
            ok && out.contains("Browser"),
            "DevTools {port} as zigral: {out}"
        );
        assert!(cdp_ok(port), "DevTools {port} as root");
    }
}
