//! Supervisor behaviour with real (shell) processes: crash-loop backoff, orphan reaping,
//! ordered shutdown with a TERM-ignoring service, control-socket commands, template instances
//! with params, limits and purge through `zigral-init ctl`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn always_crashing_service_backs_off_then_fails_at_the_limit() {
    let dir = scratch("crash");
    let init = Init::with_config(
        &dir,
        r#"
[[service]]
name = "crasher"
command = "sh"
args = ["-c", "echo boom; exit 3"]
restart = { backoff_initial = "100ms", backoff_max = "10s", limit = 4 }
"#,
    );
    let mut delays: Vec<u64> = Vec::new();
    let t0 = Instant::now();
    let last = loop {
        let s = init.service("crasher");
        if s["state"] == "backoff" {
            let b = s["backoff_ms"].as_u64().unwrap();
            let next = s["next_restart_ms"].as_u64().unwrap();
            assert!(next <= b, "next_restart_ms {next} > backoff_ms {b}");
            if delays.last() != Some(&b) {
                delays.push(b);
            }
        }
        if s["state"] == "failed" {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "never failed: {s}");
        std::thread::sleep(Duration::from_millis(10));
    };
    // Growing delays are visible in the status (a loaded machine may miss the 100 ms window,
    // not the longer ones) and every restart is logged with its delay.
    assert!(
        delays.windows(2).all(|w| w[0] < w[1]),
        "not growing: {delays:?}"
    );
    assert!(delays.len() >= 2 && delays.iter().all(|d| [100, 200, 400, 800].contains(d)));
    assert_eq!(delays.last(), Some(&800), "{delays:?}");
    for ms in [100, 200, 400, 800] {
        assert!(
            init.output()
                .contains(&format!("restarting crasher in {ms} ms"))
        );
    }
    assert_eq!(last["restarts"], 4);
    assert_eq!(last["last_exit"], "exit 3");
    assert!(last["pid"].is_null());
    // Five runs, each logged to the file and to the console with a prefix.
    let log = std::fs::read_to_string(init.state.join("logs/crasher.log")).unwrap();
    assert_eq!(log.matches("boom").count(), 5, "log file: {log:?}");
    assert_eq!(init.output().matches("[crasher] boom").count(), 5);
    assert!(init.output().contains("crash-loop limit 4"));

    // `start` clears the failure and tries again.
    init.call(json!({"cmd":"start","service":"crasher"}))
        .unwrap();
    init.wait_state("crasher", &["backoff"], Duration::from_secs(30));
}

#[test]
fn two_hundred_orphaned_grandchildren_are_all_reaped() {
    let dir = scratch("orphans");
    let init = Init::with_config(
        &dir,
        r#"
[[service]]
name = "forker"
command = "sh"
args = ["-c", "i=0; while [ $i -lt 200 ]; do (sleep 3 &); i=$((i+1)); done; echo forked; exec sleep 1000"]
"#,
    );
    let me = init.pid();
    let log = init.state.join("logs/forker.log");
    zigral_tests::wait_for(Duration::from_secs(60), "200 forks", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("forked"))
    });
    // The grandchildren were re-parented to the supervisor (child subreaper)...
    let adopted = children_of(me).len();
    assert!(adopted > 100, "only {adopted} children adopted");
    // ...and every one of them is reaped once it exits: no zombies, only the service left.
    let main = init.service("forker")["pid"].as_i64().unwrap() as i32;
    zigral_tests::wait_for(Duration::from_secs(60), "orphans reaped", || {
        let kids = children_of(me);
        (kids == vec![main]).then_some(())
    });
    let zombies: Vec<i32> = children_of(me)
        .into_iter()
        .filter(|p| matches!(stat(*p), Some(('Z', _))))
        .collect();
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
}

#[test]
fn sigterm_stops_in_reverse_order_and_kills_a_term_ignoring_service() {
    let dir = scratch("order");
    let order = dir.join("order");
    let svc = |name: &str, after: &str| {
        format!(
            r#"
[[service]]
name = "{name}"
command = "sh"
args = ["-c", "trap 'echo {name} >> {order}; exit 0' TERM; while :; do sleep 0.05; done"]
after = [{after}]
"#,
            order = order.display()
        )
    };
    let cfg = format!(
        "{}{}{}{}",
        svc("a", ""),
        svc("b", "\"a\""),
        svc("c", "\"b\""),
        r#"
[[service]]
name = "stubborn"
command = "sh"
args = ["-c", "trap '' TERM; while :; do sleep 0.05; done"]
stop_timeout = "1s"
"#
    );
    let mut init = Init::with_config(&dir, &cfg);
    for n in ["a", "b", "c", "stubborn"] {
        init.wait_state(n, &["running"], Duration::from_secs(30));
    }
    std::thread::sleep(Duration::from_millis(300)); // traps installed
    let st = init.status();
    let pids: Vec<i32> = st["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["pid"].as_i64().unwrap() as i32)
        .collect();
    let sup = init.pid();
    let t0 = Instant::now();
    let code = init.terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0), "exit code; output:\n{}", init.output());
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "stubborn not given its timeout: {took:?}"
    );
    assert_eq!(std::fs::read_to_string(&order).unwrap(), "c\nb\na\n");
    let out = init.output();
    assert!(out.contains("stubborn did not stop within 1s"), "{out}");
    assert!(out.contains("all services stopped"));
    for p in pids {
        assert!(!alive(p), "service pid {p} still running");
    }
    assert!(children_of(sup).is_empty());
    assert!(!init.socket().exists(), "socket removed at exit");
}

#[test]
fn control_socket_commands_and_errors() {
    let dir = scratch("ctl");
    let init = Init::with_config(
        &dir,
        r#"
[[service]]
name = "web"
command = "python3"
args = ["-m", "http.server", "--bind", "127.0.0.1", "${port}"]
ready = { http = "http://127.0.0.1:${port}/", timeout = "20s" }
[[service]]
name = "client"
command = "sleep"
args = ["1000"]
after = ["web"]
autostart = false
[vars]
port = 1
"#
        .replace("port = 1", &format!("port = {}", zigral_tests::free_port()))
        .as_str(),
    );
    let mode = std::fs::metadata(init.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let web = init.wait_state("web", &["ready"], Duration::from_secs(30));
    let ready_ms = web["ready_ms"].as_u64().unwrap();
    assert_eq!(init.service("client")["state"], "stopped");

    // The boot timeline: when `web` became ready (since
    // zigral-init started, so no earlier than its own start-to-ready time) and when everything
    // wanted at start was; the console gets it as one line.
    let st = init.call(json!({"cmd":"status"})).unwrap();
    let at = web["ready_at_ms"].as_u64().expect("ready_at_ms");
    assert!(
        at >= ready_ms && at <= st["boot"]["uptime_ms"].as_u64().unwrap(),
        "{st}"
    );
    // Not PID 1: the machine's uptime would say nothing about this start.
    assert!(st["boot"]["kernel_ms"].is_null(), "{st}");
    let all = st["boot"]["all_ready_ms"].as_u64().expect("all_ready_ms");
    assert!(all >= at, "{st}");
    zigral_tests::wait_for(
        Duration::from_secs(10),
        "the boot timeline on the console",
        || {
            init.output()
                .lines()
                .find(|l| l.starts_with("boot timeline: zigral-init +0.0 s | web ready +"))
                .map(str::to_owned)
        },
    );

    // Errors are replies, not disconnects.
    let e = init
        .call(json!({"cmd":"start","service":"nope"}))
        .unwrap_err();
    assert!(e.contains("unknown service"), "{e}");
    let e = init.call(json!({"cmd":"fly"})).unwrap_err();
    assert!(e.contains("unknown cmd"), "{e}");
    let e = init
        .call(json!({"cmd":"spawn","template":"desktop","instance":"1"}))
        .unwrap_err();
    assert!(e.contains("unknown template"), "{e}");

    init.call(json!({"cmd":"start","service":"client"}))
        .unwrap();
    let c = init.wait_state("client", &["running"], Duration::from_secs(30));
    let old = c["pid"].as_i64().unwrap() as i32;
    init.call(json!({"cmd":"restart","service":"client"}))
        .unwrap();
    zigral_tests::wait_for(Duration::from_secs(30), "client restarted", || {
        let s = init.service("client");
        (s["state"] == "running" && s["pid"].as_i64() != Some(old as i64)).then_some(())
    });
    assert!(!alive(old));
    init.call(json!({"cmd":"stop","service":"client"})).unwrap();
    let s = init.wait_state("client", &["stopped"], Duration::from_secs(30));
    assert!(s["pid"].is_null());

    // The CLI speaks the same protocol.
    let out = std::process::Command::new(BIN)
        .args(["ctl", "--socket"])
        .arg(init.socket())
        .arg("status")
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("SERVICE"), "{table}");
    assert!(table.contains("READY AT"), "{table}");
    assert!(table.contains("boot timeline: "), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web") && l.contains("ready")),
        "{table}"
    );

    // Another supervisor on the same state dir refuses to start.
    let second = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(dir.join("services.toml"))
        .arg("--state-dir")
        .arg(&init.state)
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("already running"));

    // shutdown over the socket: ordered stop, exit 0 (host mode).
    let mut init = init;
    init.call(json!({"cmd":"shutdown","action":"poweroff"}))
        .unwrap();
    let mut p = init.proc.take().unwrap();
    let st = p
        .wait_timeout(Duration::from_secs(30))
        .expect("exit after shutdown");
    assert_eq!(st.code(), Some(0));
}

#[test]
fn a_config_with_three_mistakes_reports_all_three_and_starts_nothing() {
    let dir = scratch("badcfg");
    let marker = dir.join("started");
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[[service]]
name = "ok"
command = "touch"
args = ["{}"]

[[service]]
name = "typo"
command = "true"
restart_policy = "always"

[[service]]
name = "badvalue"
command = "true"
stop_timeout = "soon"

[[service]]
name = "orphan"
command = "true"
after = ["does-not-exist"]
"#,
            marker.display()
        ),
    )
    .unwrap();
    for mode in ["check", "run"] {
        let out = std::process::Command::new(BIN)
            .args([mode, "--config"])
            .arg(&cfg)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{mode}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("3 problem(s)"), "{mode}: {err}");
        assert!(
            err.contains("unknown field `restart_policy`"),
            "{mode}: {err}"
        );
        assert!(err.contains("bad duration \"soon\""), "{mode}: {err}");
        assert!(
            err.contains("unknown service \"does-not-exist\""),
            "{mode}: {err}"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(!marker.exists(), "a service ran despite the bad config");
    assert!(!dir.join("state/init.sock").exists());

    // And the shipped config is valid.
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(repo_config("host.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn user_env_cwd_and_rlimits_apply_to_the_service() {
    let dir = scratch("ids");
    let init = Init::with_config(
        &dir,
        r#"
[[service]]
name = "who"
command = "sh"
args = ["-c", "echo uid=$(id -u) gid=$(id -g) nofile=$(ulimit -n) pwd=$(pwd) greet=$GREETING sid=$(ps -o sid= -p $$ | tr -d ' ') pid=$$; exec sleep 1000"]
user = "nobody"
cwd = "/"
env = { GREETING = "hi ${N_or_greeting}" }
limits = { nofile = 1234 }
[vars]
N_or_greeting = "there"
"#,
    );
    let s = init.wait_state("who", &["running"], Duration::from_secs(30));
    let log = zigral_tests::wait_for(Duration::from_secs(30), "who output", || {
        std::fs::read_to_string(init.state.join("logs/who.log"))
            .ok()
            .filter(|l| l.contains("pid="))
    });
    let pid = s["pid"].as_i64().unwrap();
    assert!(log.contains("uid=65534 "), "{log}");
    assert!(log.contains("nofile=1234 "), "{log}");
    assert!(log.contains("pwd=/ "), "{log}");
    assert!(log.contains("greet=hi there "), "{log}");
    // Its own session: the session id is its own pid.
    assert!(log.contains(&format!("sid={pid} pid={pid}")), "{log}");
}

#[test]
fn probe_timeout_and_restart_policies() {
    let dir = scratch("policy");
    let port = zigral_tests::free_port();
    let init = Init::with_config(
        &dir,
        &format!(
            r#"
[[service]]
name = "never-ready"
command = "sleep"
args = ["1000"]
ready = {{ tcp = "127.0.0.1:{port}", timeout = "300ms" }}
restart = {{ limit = 1, backoff_initial = "50ms" }}

[[service]]
name = "oneshot-ok"
command = "true"
restart = {{ policy = "on-failure" }}

[[service]]
name = "oneshot-bad"
command = "false"
restart = {{ policy = "never" }}

[[service]]
name = "dependent"
command = "sleep"
args = ["1000"]
after = ["never-ready"]
"#
        ),
    );
    let s = init.wait_state("never-ready", &["failed"], Duration::from_secs(30));
    assert!(
        s["last_exit"]
            .as_str()
            .unwrap()
            .starts_with("not ready within"),
        "{s}"
    );
    assert_eq!(s["restarts"], 1);
    let ok = init.wait_state("oneshot-ok", &["stopped"], Duration::from_secs(30));
    assert_eq!(ok["last_exit"], "exit 0");
    assert_eq!(ok["restarts"], 0);
    let bad = init.wait_state("oneshot-bad", &["failed"], Duration::from_secs(30));
    assert_eq!(bad["last_exit"], "exit 1");
    assert_eq!(bad["restarts"], 0);
    // A service whose dependency never became ready never starts.
    let d = init.service("dependent");
    assert_eq!(d["state"], "starting");
    assert!(d["pid"].is_null());
}

#[test]
fn a_stable_run_resets_the_backoff_and_the_crash_loop_count() {
    let dir = scratch("stable");
    let init = Init::with_config(
        &dir,
        r#"
[[service]]
name = "flaky"
command = "sh"
args = ["-c", "sleep 0.4; exit 1"]
restart = { backoff_initial = "100ms", stable = "200ms", limit = 2 }
"#,
    );
    // Each run lasts longer than `stable`, so every failure is the first in a row: the delay
    // stays at 100 ms and the limit of 2 is never reached.
    let s = zigral_tests::wait_for(Duration::from_secs(60), "4 restarts", || {
        let s = init.service("flaky");
        (s["restarts"].as_u64() >= Some(4)).then_some(s)
    });
    assert_ne!(s["state"], "failed", "{s}");
    assert_eq!(s["backoff_ms"], 100, "{s}");
    assert!(!init.output().contains("restarting flaky in 200 ms"));
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

/// A template with params, instance limits and purge paths, driven with the CLI: params
/// reach the service, usage is counted over the instance's processes, `limits` changes what
/// is asked for, and `destroy --purge` deletes only inside the state dir.
#[test]
fn template_params_limits_and_purge_through_the_cli() {
    let dir = scratch("params");
    let init = Init::with_config(
        &dir,
        r#"
[[template]]
name = "job"
instances = []
params = { dir = "jobs/${N}", size = "small" }
limits = { memory = "64M", pids = "64" }
purge = ["jobs/${N}", "scratch/${N}"]
[[template.service]]
name = "worker"
command = "sh"
args = ["-c", "echo ${size} > ${state_dir}/${dir}/size; sleep 1000 & sleep 1000 & wait"]
mkdir = ["${dir}", "scratch/${N}"]
"#,
    );
    let (ok, out) = ctl(
        &init,
        &[
            "spawn",
            "job",
            "2",
            "--param",
            "dir=keep/two",
            "--param",
            "size=big",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = ctl(&init, &["spawn", "job", "3", "--param", "bogus=1"]);
    assert!(!ok && out.contains("unknown param \"bogus\""), "{out}");
    let (ok, out) = ctl(&init, &["spawn", "job", "3", "--param", "dir=/etc"]);
    assert!(!ok && out.contains("dir"), "{out}");
    init.wait_state("worker@2", &["running"], Duration::from_secs(30));
    let size = init.state.join("keep/two/size");
    zigral_tests::wait_for(Duration::from_secs(30), "the worker's file", || {
        (std::fs::read_to_string(&size).ok()? == "big\n").then_some(())
    });
    // sh and its two sleeps.
    let g = zigral_tests::wait_for(Duration::from_secs(30), "3 tasks", || {
        let st = init.status();
        let g = st["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "job@2")
            .cloned()?;
        (g["tasks"] == 3).then_some(g)
    });
    assert_eq!(g["params"], json!({"dir":"keep/two","size":"big"}));
    assert_eq!(g["limits"], json!({"memory":64u64 << 20,"pids":64}));
    assert!(g["memory_bytes"].as_u64().unwrap() > 0, "{g}");
    assert!(g["cpu_usec"].is_u64(), "{g}");

    let (ok, out) = ctl(
        &init,
        &["limits", "job@2", "--memory", "128M", "--pids", "32"],
    );
    assert!(ok, "{out}");
    let (ok, out) = ctl(&init, &["limits", "job@2", "--pids", "0"]);
    assert!(!ok && out.contains("pids"), "{out}");
    let (ok, out) = ctl(&init, &["limits", "job@2", "--cpus", "0"]);
    assert!(!ok && out.contains("cpus"), "{out}");
    let (ok, out) = ctl(&init, &["--json", "status"]);
    assert!(ok, "{out}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        st["groups"][0]["limits"],
        json!({"memory":128u64 << 20,"pids":32})
    );
    let (ok, table) = ctl(&init, &["status"]);
    assert!(ok, "{table}");
    let line = table.lines().find(|l| l.starts_with("job@2")).unwrap();
    for part in ["128M", "32", "dir=keep/two", "size=big"] {
        assert!(line.contains(part), "{part} missing: {table}");
    }

    // A purge path that became a symlink to elsewhere: the link goes, its target stays.
    let outside = dir.join("outside");
    std::fs::create_dir_all(outside.join("precious")).unwrap();
    let scratch2 = init.state.join("scratch/2");
    std::fs::remove_dir(&scratch2).unwrap();
    std::os::unix::fs::symlink(&outside, &scratch2).unwrap();
    let pids = children_of(init.pid());
    let (ok, out) = ctl(&init, &["destroy", "job", "2", "--purge"]);
    assert!(ok, "{out}");
    for p in pids {
        assert!(!alive(p), "{p} outlived destroy");
    }
    assert!(std::fs::symlink_metadata(&scratch2).is_err());
    assert!(outside.join("precious").is_dir());
    // Not a purge path: kept.
    assert!(size.exists());
    assert!(init.status()["groups"].as_array().unwrap().is_empty());
}
