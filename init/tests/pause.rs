//! `pause` / `resume` with real shell services: a paused service's whole process group stops
//! running at once (its output file stops growing) and runs again after `resume`; a paused
//! service that is stopped, restarted, destroyed or shut down is killed, never thawed (a
//! frozen screen recorder must not capture another frame); pausing what does not run fails.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A shell loop that appends a counter to `file` every 20 ms (each wait is a `sleep` child in
/// its process group) and writes `TERM` there if it ever handles a SIGTERM (which it
/// otherwise ignores).
fn counter(name: &str, file: &str, extra: &str) -> String {
    format!(
        r#"
[[service]]
name = "{name}"
command = "sh"
args = ["-c", "trap 'echo TERM >> {file}' TERM; i=0; while :; do i=$((i+1)); echo $i >> {file}; sleep 0.02; done"]
{extra}
"#
    )
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
}

/// Waits until `file` has more than `n` lines.
fn grows_past(file: &Path, n: usize) {
    zigral_tests::wait_for(Duration::from_secs(30), "the counter to grow", || {
        (lines(file) > n).then_some(())
    });
}

/// Asserts that `file` stays exactly as it is for 300 ms (a running loop adds ~15 lines).
fn stays_frozen(file: &Path) -> String {
    let before = std::fs::read_to_string(file).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let after = std::fs::read_to_string(file).unwrap();
    assert_eq!(
        before.len(),
        after.len(),
        "it kept writing while paused: {:?}",
        &after[before.len().min(after.len())..]
    );
    after
}

/// Runs `zigral-init ctl --socket S ARGS...`; returns (success, stdout + stderr).
fn ctl(init: &Init, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(BIN)
        .args(["ctl", "--socket"])
        .arg(init.socket())
        .args(args)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn pid_of(s: &Value) -> i32 {
    s["pid"].as_i64().unwrap() as i32
}

#[test]
fn pause_freezes_the_whole_process_group_and_resume_thaws_it() {
    let dir = scratch("pause");
    let file = dir.join("count");
    let init = Init::with_config(&dir, &counter("counter", &file.display().to_string(), ""));
    let s = init.wait_state("counter", &["running"], Duration::from_secs(30));
    assert_eq!(s["paused"], false);
    let pid = pid_of(&s);
    grows_past(&file, 3);

    let t0 = Instant::now();
    let r = init
        .call(json!({"cmd":"pause","service":"counter"}))
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(r, json!({"service":"counter","paused":true}));
    assert!(took < Duration::from_secs(2), "pause took {took:?}");
    // The reply means stopped: the shell is in state T right now (or D, waiting in vfork for
    // a child that is stopped itself).
    assert!(matches!(stat(pid), Some(('T' | 'D', _))), "{:?}", stat(pid));
    let frozen = stays_frozen(&file);
    let s = init.service("counter");
    assert_eq!(s["paused"], true, "{s}");
    assert_eq!(s["state"], "running");
    assert_eq!(pid_of(&s), pid, "a paused service is not restarted");
    // Pausing again is fine and changes nothing.
    assert_eq!(
        init.call(json!({"cmd":"pause","service":"counter"}))
            .unwrap()["paused"],
        true
    );
    let (ok, table) = ctl(&init, &["status"]);
    assert!(ok, "{table}");
    let line = table.lines().find(|l| l.starts_with("counter")).unwrap();
    assert!(line.contains("running (paused)"), "{table}");

    let r = init
        .call(json!({"cmd":"resume","service":"counter"}))
        .unwrap();
    assert_eq!(r, json!({"service":"counter","paused":false}));
    grows_past(&file, frozen.lines().count());
    let s = init.service("counter");
    assert_eq!(s["paused"], false, "{s}");
    assert_eq!(pid_of(&s), pid);
    // Resuming what runs is fine too.
    assert_eq!(
        init.call(json!({"cmd":"resume","service":"counter"}))
            .unwrap()["paused"],
        false
    );

    // The same through the CLI.
    let (ok, out) = ctl(&init, &["pause", "counter"]);
    assert!(ok && out.contains("\"paused\":true"), "{out}");
    let frozen = stays_frozen(&file);
    let (ok, out) = ctl(&init, &["resume", "counter"]);
    assert!(ok && out.contains("\"paused\":false"), "{out}");
    grows_past(&file, frozen.lines().count());
    assert!(!std::fs::read_to_string(&file).unwrap().contains("TERM"));
    assert!(init.output().contains("control: pause counter"));
}

#[test]
fn pausing_what_does_not_run_is_an_error() {
    let dir = scratch("pause-err");
    let file = dir.join("count");
    let init = Init::with_config(
        &dir,
        &counter("idle", &file.display().to_string(), "autostart = false"),
    );
    init.wait_state("idle", &["stopped"], Duration::from_secs(30));
    let e = init
        .call(json!({"cmd":"pause","service":"idle"}))
        .unwrap_err();
    assert!(e.contains("idle is not running (stopped)"), "{e}");
    let e = init
        .call(json!({"cmd":"pause","service":"nope"}))
        .unwrap_err();
    assert!(e.contains("unknown service \"nope\""), "{e}");
    let e = init
        .call(json!({"cmd":"resume","service":"nope"}))
        .unwrap_err();
    assert!(e.contains("unknown service \"nope\""), "{e}");
    // Resuming a stopped service does nothing and says so.
    assert_eq!(
        init.call(json!({"cmd":"resume","service":"idle"})).unwrap(),
        json!({"service":"idle","paused":false})
    );
    let (ok, out) = ctl(&init, &["pause", "idle"]);
    assert!(!ok && out.contains("not running"), "{out}");
    assert!(!init.service("idle")["paused"].as_bool().unwrap());
    assert!(!file.exists(), "it never ran");
}

/// Pauses `name` and returns its counter file's content once frozen.
fn pause(init: &Init, name: &str, file: &Path) -> String {
    grows_past(file, 3);
    init.call(json!({"cmd":"pause","service":name})).unwrap();
    stays_frozen(file)
}

#[test]
fn a_paused_service_is_killed_never_thawed_by_stop_restart_destroy_and_shutdown() {
    let dir = scratch("pause-kill");
    let f = |n: &str| dir.join(n).display().to_string();
    // Each ignores SIGTERM: a thawed one would take its 30 s stop timeout and write TERM.
    let slow = r#"stop_timeout = "30s""#;
    let template = format!(
        r#"
[[template]]
name = "rec"
instances = []
[[template.service]]
name = "recorder"
command = "sh"
args = ["-c", "trap 'echo TERM >> {file}' TERM; i=0; while :; do i=$((i+1)); echo $i >> {file}; sleep 0.02; done"]
stop_timeout = "30s"
"#,
        file = f("rec")
    );
    // (restartme's own new run is stopped at the end: a short timeout.)
    let cfg = format!(
        "{}{}{}{template}",
        counter("stopme", &f("stop"), slow),
        counter("restartme", &f("restart"), r#"stop_timeout = "1s""#),
        counter("shutme", &f("shut"), slow),
    );
    let mut init = Init::with_config(&dir, &cfg);
    for n in ["stopme", "restartme", "shutme"] {
        init.wait_state(n, &["running"], Duration::from_secs(30));
    }
    init.call(json!({"cmd":"spawn","template":"rec","instance":1}))
        .unwrap();
    init.wait_state("recorder@1", &["running"], Duration::from_secs(30));

    // stop: SIGKILL at once, not 30 s of SIGTERM; `paused` is cleared.
    let frozen = pause(&init, "stopme", &dir.join("stop"));
    let t0 = Instant::now();
    init.call(json!({"cmd":"stop","service":"stopme"})).unwrap();
    let s = init.wait_state("stopme", &["stopped"], Duration::from_secs(10));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(s["paused"], false, "{s}");
    assert_eq!(s["last_exit"], "signal 9 (SIGKILL)", "{s}");
    assert_eq!(
        std::fs::read_to_string(dir.join("stop")).unwrap(),
        frozen,
        "it ran again after the pause"
    );

    // restart: the frozen run is killed; a new, unpaused run starts counting from 1.
    let restart = dir.join("restart");
    let frozen = pause(&init, "restartme", &restart);
    let old = pid_of(&init.service("restartme"));
    init.call(json!({"cmd":"restart","service":"restartme"}))
        .unwrap();
    let s = zigral_tests::wait_for(Duration::from_secs(10), "a new run", || {
        let s = init.service("restartme");
        (s["state"] == "running" && pid_of(&s) != old).then_some(s)
    });
    assert_eq!(s["paused"], false, "{s}");
    assert!(!alive(old));
    grows_past(&restart, frozen.lines().count());
    let all = std::fs::read_to_string(&restart).unwrap();
    let after = &all[frozen.len()..];
    assert!(after.starts_with("1\n"), "the old run went on: {after:?}");

    // destroy of the instance: answered at once, nothing written after the pause.
    let rec = dir.join("rec");
    let frozen = pause(&init, "recorder@1", &rec);
    let t0 = Instant::now();
    let r = init
        .call(json!({"cmd":"destroy","template":"rec","instance":1}))
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(r["destroyed"], "rec@1");
    assert_eq!(std::fs::read_to_string(&rec).unwrap(), frozen);

    // shutdown (SIGTERM to zigral-init): the paused service does not hold it up.
    let shut = dir.join("shut");
    let frozen = pause(&init, "shutme", &shut);
    let t0 = Instant::now();
    assert_eq!(init.terminate(Duration::from_secs(20)), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(std::fs::read_to_string(&shut).unwrap(), frozen);
    for f in ["stop", "shut", "rec"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(!text.contains("TERM"), "{f} handled SIGTERM: thawed");
    }
}

#[test]
fn a_paused_service_is_not_killed_for_missing_its_readiness_probe() {
    let dir = scratch("pause-probe");
    let file = dir.join("count");
    let flag = dir.join("ready");
    let probe = format!(
        "ready = {{ path = \"{}\", timeout = \"1s\" }}\nstop_timeout = \"1s\"",
        flag.display()
    );
    let init = Init::with_config(&dir, &counter("slow", &file.display().to_string(), &probe));
    let s = init.wait_state("slow", &["starting"], Duration::from_secs(30));
    let pid = pid_of(&s);
    init.call(json!({"cmd":"pause","service":"slow"})).unwrap();
    // The probe runs out while it is frozen: it probes again instead of killing it.
    zigral_tests::wait_for(Duration::from_secs(30), "the probe to start over", || {
        init.output()
            .contains("slow: not ready within")
            .then_some(())
    });
    let s = init.service("slow");
    assert_eq!(
        (s["state"].as_str(), s["paused"].as_bool(), pid_of(&s)),
        (Some("starting"), Some(true), pid),
        "{s}\n{}",
        init.output()
    );
    assert!(alive(pid));
    assert!(s["last_exit"].is_null(), "{s}");
    init.call(json!({"cmd":"resume","service":"slow"})).unwrap();
    std::fs::write(&flag, "").unwrap();
    let s = init.wait_state("slow", &["ready"], Duration::from_secs(30));
    assert_eq!((pid_of(&s), s["restarts"].as_u64()), (pid, Some(0)), "{s}");
}

/// A shell that forks all the time is often caught between vfork and exec: the child stops,
/// the shell waits in the kernel (state D) for it. It cannot run again either: every pause
/// succeeds, and the shell is `T` once the child is released.
#[test]
fn a_service_forking_all_the_time_pauses_every_time() {
    let dir = scratch("pause-fork");
    let init = Init::with_config(
        &dir,
        r#"
[[service]]
name = "forker"
command = "sh"
args = ["-c", "while :; do /bin/true; done"]
stop_timeout = "1s"
"#,
    );
    let s = init.wait_state("forker", &["running"], Duration::from_secs(30));
    let pid = pid_of(&s);
    for round in 0..20 {
        let t0 = Instant::now();
        let r = init.call(json!({"cmd":"pause","service":"forker"}));
        assert!(r.is_ok(), "round {round}: {r:?}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        assert!(matches!(stat(pid), Some(('T' | 'D', _))), "{:?}", stat(pid));
        init.call(json!({"cmd":"resume","service":"forker"}))
            .unwrap();
        zigral_tests::wait_for(Duration::from_secs(10), "the shell to run again", || {
            (stat(pid)?.0 != 'T').then_some(())
        });
    }
    assert_eq!(pid_of(&init.service("forker")), pid);
}
