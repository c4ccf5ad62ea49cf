//! PID 1 mode inside a fresh PID + mount + UTS + network namespace (`unshare`, as root):
//! hostname and loopback set up, orphans reaped, SIGTERM → ordered stop → reboot(2).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn pid1_in_a_namespace_reaps_orphans_and_stops_cleanly_on_term() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("the PID 1 test needs root (unshare --pid); run the suite as root");
    }
    let dir = scratch("pid1");
    let order = dir.join("order");
    let seen = dir.join("seen");
    let port = zigral_tests::free_port();
    let cfg = dir.join("pid1.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[settings]
hostname = "zigral-pid1-test"

[[service]]
name = "web"
command = "python3"
args = ["-m", "http.server", "--bind", "127.0.0.1", "{port}"]
# Only reachable if PID 1 brought up loopback in the new network namespace.
ready = {{ http = "http://127.0.0.1:{port}/", timeout = "30s" }}

[[service]]
name = "forker"
command = "sh"
args = ["-c", "trap 'echo forker >> {order}; exit 0' TERM; echo \"$$ $(hostname)\" > {seen}; i=0; while [ $i -lt 50 ]; do (sleep 2 &); i=$((i+1)); done; while :; do sleep 0.05; done"]
after = ["web"]
"#,
            order = order.display(),
            seen = seen.display()
        ),
    )
    .unwrap();
    let state = dir.join("state");
    let out = std::fs::File::create(dir.join("out.log")).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--uts", "--net", "--"])
        .arg(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--state-dir")
        .arg(&state)
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let mut unshare = zigral_tests::Proc::spawn(cmd);
    let output = || std::fs::read_to_string(dir.join("out.log")).unwrap_or_default();

    // The supervisor is unshare's only child; it is PID 1 inside.
    let init = zigral_tests::wait_for(Duration::from_secs(30), "namespace init", || {
        children_of(unshare.pid()).first().copied()
    });
    let sock = state.join("init.sock");
    zigral_tests::wait_for(Duration::from_secs(60), "forker running", || {
        let st = zigral_init::control::call(
            &sock,
            &serde_json::json!({"cmd":"status"}),
            Duration::from_secs(10),
        )
        .ok()?;
        let all_up = st["services"]
            .as_array()?
            .iter()
            .all(|s| s["state"] == "ready" || s["state"] == "running");
        (all_up && seen.exists()).then_some(())
    });
    let seen_text = std::fs::read_to_string(&seen).unwrap();
    assert!(seen_text.ends_with("zigral-pid1-test\n"), "{seen_text:?}");
    assert_ne!(
        nix::unistd::gethostname().unwrap().to_string_lossy(),
        "zigral-pid1-test",
        "host's hostname changed"
    );
    let out_now = output();
    assert!(out_now.contains("mounted tmpfs on /tmp"), "{out_now}");
    assert!(out_now.contains("loopback up"), "{out_now}");

    // Orphans (re-parented to PID 1) get reaped: only the two services remain as children.
    zigral_tests::wait_for(Duration::from_secs(60), "orphans reaped", || {
        let kids = children_of(init);
        (kids.len() == 2).then_some(())
    });
    for k in children_of(init) {
        assert!(!matches!(stat(k), Some(('Z', _))), "zombie {k}");
    }

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = unshare
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("namespace did not end:\n{}", output()));
    let out_all = output();
    assert!(
        out_all.contains("SIGTERM: shutting down (poweroff)"),
        "{out_all}"
    );
    assert!(out_all.contains("all services stopped"), "{out_all}");
    assert!(out_all.contains("poweroff"), "{out_all}");
    // forker (depends on web) stopped first, then web.
    let stop_forker = out_all.find("stopping forker").expect("forker stopped");
    let stop_web = out_all.find("stopping web").expect("web stopped");
    assert!(stop_forker < stop_web);
    assert_eq!(std::fs::read_to_string(&order).unwrap(), "forker\n");
    // reboot(RB_POWER_OFF) in a PID namespace ends its init with SIGINT, which unshare
    // passes on.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        st.signal(),
        Some(libc::SIGINT),
        "unshare status {st:?}\n{out_all}"
    );
    assert!(!alive(init));
    let _ = std::fs::remove_dir_all(&dir);
}
