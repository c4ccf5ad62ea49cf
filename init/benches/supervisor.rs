//! zigral-init benchmark (harness = false; prints `name: value` lines):
//! - supervisor idle RSS while supervising one desktop (goal <= 4 MiB), vs tini and a bash
//!   supervisor script running the same three processes;
//! - stack start to all-ready for one desktop (goal <= 2 s), vs a shell script that starts the
//!   same three processes as fast as it can (readiness measured the same way for both);
//! - kill -9 -> ready again for x11vnc and Chromium with zero backoff, vs a shell restart loop;
//! - memory (PSS) of an idle desktop (Xvfb + x11vnc + Chromium on about:blank): ours under its
//!   own user with Chromium's sandbox on (as root), vs the peers' way (the same processes
//!   started by a script with `--no-sandbox`, no user switch).
//!
//! Run: `cargo bench -p zigral-init --bench supervisor` (needs xvfb, x11vnc, chromium; tini
//! optional: `apt-get install tini`).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zigral_tests::{Proc, claim_displays, free_port_range, http_get};

const BIN: &str = env!("CARGO_BIN_EXE_zigral-init");
const RUNS: usize = 5;
const CHROMIUM_FLAGS: &str = "--no-sandbox --disable-background-networking --disable-component-update \
--disable-sync --no-first-run --disable-dev-shm-usage --disable-gpu --no-default-browser-check \
--password-store=basic --remote-debugging-address=127.0.0.1";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn scratch(tag: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// (private anonymous KiB, PSS KiB) of `pid`.
fn private_and_pss_kib(pid: i32) -> (u64, u64) {
    let field = |file: &str, key: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("status", "RssAnon:"), field("smaps_rollup", "Pss:"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn x_ready(d: u32) -> bool {
    zigral_init::probe::x11_handshake(d).is_ok()
}
fn vnc_ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut b = [0u8; 4];
    s.read_exact(&mut b).is_ok() && &b == b"RFB "
}
fn cdp_ready(port: u16) -> bool {
    matches!(http_get(port, "/json/version"), Ok((200, _)))
}

fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

struct Stack {
    proc: Proc,
    sock: PathBuf,
    d: u32,
    vnc: u16,
    cdp: u16,
    _claim: zigral_tests::DisplayClaim,
}

impl Stack {
    fn status(&self) -> Value {
        zigral_init::control::call(
            &self.sock,
            &json!({"cmd":"status"}),
            Duration::from_secs(10),
        )
        .unwrap_or(Value::Null)
    }
    fn svc(&self, name: &str) -> Value {
        self.status()["services"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }
    fn stop(mut self) {
        self.proc.signal(nix::sys::signal::Signal::SIGTERM);
        self.proc.wait_timeout(Duration::from_secs(30));
    }
}

/// zigral-init on config/host.toml; returns once the control socket exists.
fn start_ours(dir: &Path) -> (Stack, Instant) {
    let claim = claim_displays(1);
    let (vnc, cdp) = (free_port_range(1), free_port_range(1));
    let state = dir.join(format!("state-{}", claim.n));
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config"])
        .arg(repo().join("config/host.toml"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--set", &format!("display_base={}", claim.n)])
        .args(["--set", &format!("vnc_base={vnc}")])
        .args(["--set", &format!("cdp_base={cdp}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t0 = Instant::now();
    let proc = Proc::spawn(cmd);
    (
        Stack {
            proc,
            sock: state.join("init.sock"),
            d: claim.n,
            vnc,
            cdp,
            _claim: claim,
        },
        t0,
    )
}

/// A plain shell script doing the same job with no supervision logic.
fn shell_stack(dir: &Path, d: u32, vnc: u16, cdp: u16, restart_loops: bool) -> String {
    let prof = dir.join(format!("sh-chrome-{d}"));
    let lp = |c: String| {
        if restart_loops {
            format!("(while :; do {c}; done) &")
        } else {
            format!("{c} &")
        }
    };
    format!(
        "Xvfb :{d} -screen 0 1280x800x24 -nolisten tcp -noreset -dpi 96 >/dev/null 2>&1 &\n\
         while ! [ -S /tmp/.X11-unix/X{d} ]; do sleep 0.01; done\n\
         {}\n{}\nwait\n",
        lp(format!(
            "x11vnc -display :{d} -rfbport {vnc} -localhost -noipv6 -forever -shared -nopw -norc \
             -noxrecord -nowf -nowcr -nonap -wait 10 -defer 10 -xkb -quiet >/dev/null 2>&1"
        )),
        lp(format!(
            "DISPLAY=:{d} chromium {CHROMIUM_FLAGS} --remote-debugging-port={cdp} \
             --user-data-dir={} about:blank >/dev/null 2>&1",
            prof.display()
        )),
    )
}

fn main() {
    let dir = scratch("sup");
    // Warm the page cache so the first measured run is not an outlier.
    let _ = Command::new("chromium").arg("--version").output();

    // 1. Stack start-up to all-ready.
    let mut ours = Vec::new();
    let mut idle_rss = 0;
    let mut desktop_pss = 0;
    for run in 0..RUNS {
        let (st, t0) = start_ours(&dir);
        poll_until(Duration::from_secs(60), || desktop_ready(&st.status())).expect("stack ready");
        let took = t0.elapsed();
        ours.push(took.as_secs_f64() * 1000.0);
        if run == RUNS - 1 {
            std::thread::sleep(Duration::from_secs(3));
            idle_rss = rss_kib(st.proc.pid());
            let (anon, pss) = private_and_pss_kib(st.proc.pid());
            println!("supervisor_idle_rss_anon_kib: {anon}");
            println!("supervisor_idle_pss_kib: {pss}");
            let roots: Vec<i32> = ["xvfb@0", "x11vnc@0", "chromium@0"]
                .iter()
                .map(|n| st.svc(n)["pid"].as_i64().unwrap_or(0) as i32)
                .collect();
            let chrome_uid = uid_of(roots[2]);
            desktop_pss = tree_pss_kib(&roots);
            println!(
                "desktop_idle_pss_mib: {:.1} (Xvfb + x11vnc + Chromium on about:blank, uid {chrome_uid}, sandbox on)",
                desktop_pss as f64 / 1024.0
            );
        }
        st.stop();
    }
    let mut peer = Vec::new();
    let mut bash_rss = 0;
    let mut tini_rss = None;
    let have_tini = Command::new("tini").arg("--version").output().is_ok();
    for run in 0..RUNS {
        let claim = claim_displays(1);
        let (vnc, cdp) = (free_port_range(1), free_port_range(1));
        let script = shell_stack(&dir, claim.n, vnc, cdp, false);
        let mut cmd = if have_tini && run == RUNS - 1 {
            let mut c = Command::new("tini");
            c.args(["-s", "--", "bash", "-c", &script]);
            c
        } else {
            let mut c = Command::new("bash");
            c.args(["-c", &script]);
            c
        };
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let t0 = Instant::now();
        let mut p = Proc::spawn(cmd);
        let mut x = false;
        let mut v = false;
        let mut c = false;
        while t0.elapsed() < Duration::from_secs(60) && !(x && v && c) {
            x = x || x_ready(claim.n);
            v = v || (x && vnc_ready(vnc));
            c = c || (x && cdp_ready(cdp));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(x && v && c, "shell stack not ready");
        peer.push(t0.elapsed().as_secs_f64() * 1000.0);
        if run == RUNS - 1 {
            std::thread::sleep(Duration::from_secs(3));
            let mut roots: Vec<i32> =
                pids_matching(&[format!("Xvfb :{}", claim.n), format!("-rfbport {vnc}")])
                    .into_iter()
                    // The processes themselves, not the script (or tini) naming them.
                    .filter(|p| {
                        let c = cmdline(*p);
                        c.starts_with("Xvfb ") || c.starts_with("x11vnc ")
                    })
                    .collect();
            roots.push(main_pid(&format!("--remote-debugging-port={cdp}")));
            let peer_pss = tree_pss_kib(&roots);
            println!(
                "desktop_idle_pss_mib_peer_nosandbox: {:.1} (the same processes, --no-sandbox, no user switch)",
                peer_pss as f64 / 1024.0
            );
            if peer_pss > 0 && desktop_pss > 0 {
                println!(
                    "desktop_idle_pss_vs_peer: {:.2}x",
                    desktop_pss as f64 / peer_pss as f64
                );
                println!(
                    "idle_desktops_per_4gib: {} (peer way: {})",
                    (4u64 << 20) / desktop_pss,
                    (4u64 << 20) / peer_pss
                );
            }
            if have_tini {
                tini_rss = Some(rss_kib(p.pid()));
                let (anon, pss) = private_and_pss_kib(p.pid());
                println!("tini_idle_rss_anon_kib: {anon}");
                println!("tini_idle_pss_kib: {pss}");
                let kids = zigral_init::supervisor::children_of(p.pid());
                bash_rss = kids.first().map(|k| rss_kib(*k)).unwrap_or(0);
            } else {
                bash_rss = rss_kib(p.pid());
            }
        } else if run == RUNS - 2 && !have_tini {
            bash_rss = rss_kib(p.pid());
        }
        p.signal(nix::sys::signal::Signal::SIGTERM);
        p.wait_timeout(Duration::from_secs(5));
        drop(p);
        // Its children are not in the script's process group's control after `&`: reap by
        // display / port.
        for pid in pids_matching(&[
            format!("Xvfb :{}", claim.n),
            format!("-rfbport {vnc}"),
            format!("--remote-debugging-port={cdp}"),
        ]) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let o = median(ours.clone());
    let s = median(peer.clone());
    println!("stack_start_to_ready_ms: {o:.0}");
    println!("stack_start_to_ready_ms_runs: {ours:.0?}");
    println!("stack_start_shell_script_ms: {s:.0}");
    println!("stack_start_vs_shell_script: {:.2}x", o / s);
    println!("supervisor_idle_rss_kib: {idle_rss}");
    println!("supervisor_idle_rss_mib: {:.2}", idle_rss as f64 / 1024.0);
    println!("bash_supervisor_script_rss_kib: {bash_rss}");
    if bash_rss > 0 {
        println!(
            "supervisor_idle_rss_vs_bash_script: {:.2}x",
            idle_rss as f64 / bash_rss as f64
        );
    }
    if let Some(t) = tini_rss {
        println!("tini_idle_rss_kib: {t}");
        println!(
            "supervisor_idle_rss_vs_tini: {:.2}x",
            idle_rss as f64 / t as f64
        );
    }

    // 2. kill -9 -> ready again, with zero backoff so only detection + start + probe count.
    // Zero backoff is set per service through the config; use a copy with backoff 0.
    let cfg0 = dir.join("host-nobackoff.toml");
    let text = std::fs::read_to_string(repo().join("config/host.toml"))
        .unwrap()
        .replace(
            "stop_timeout = \"5s\"\n",
            "stop_timeout = \"5s\"\nrestart = { backoff_initial = \"0s\" }\n",
        )
        .replace(
            "stop_timeout = \"10s\"\n",
            "stop_timeout = \"10s\"\nrestart = { backoff_initial = \"0s\" }\n",
        );
    std::fs::write(&cfg0, text).unwrap();
    let claim = claim_displays(1);
    let (vnc, cdp) = (free_port_range(1), free_port_range(1));
    let state = dir.join("state-kill");
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config"])
        .arg(&cfg0)
        .arg("--state-dir")
        .arg(&state)
        .args(["--set", &format!("display_base={}", claim.n)])
        .args(["--set", &format!("vnc_base={vnc}")])
        .args(["--set", &format!("cdp_base={cdp}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let st = Stack {
        proc: Proc::spawn(cmd),
        sock: state.join("init.sock"),
        d: claim.n,
        vnc,
        cdp,
        _claim: claim,
    };
    poll_until(Duration::from_secs(60), || desktop_ready(&st.status())).expect("ready");
    let _ = st.d;
    for (svc, port_check) in [
        (
            "x11vnc@0",
            Box::new(|| vnc_ready(st.vnc)) as Box<dyn Fn() -> bool>,
        ),
        ("chromium@0", Box::new(|| cdp_ready(st.cdp))),
    ] {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let old = st.svc(svc)["pid"].as_i64().unwrap();
            let t0 = Instant::now();
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(old as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            poll_until(Duration::from_secs(60), || {
                let s = st.svc(svc);
                s["state"] == "ready" && s["pid"].as_i64() != Some(old)
            })
            .expect("back");
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
            assert!(port_check());
            // Past the stable period is not needed: backoff is zero either way.
            std::thread::sleep(Duration::from_millis(300));
        }
        let short = svc.trim_end_matches("@0");
        println!("kill9_to_ready_{short}_ms: {:.0}", median(times.clone()));
        println!("kill9_to_ready_{short}_ms_runs: {times:.0?}");
    }
    st.stop();

    // Peer: a shell `while :; do x11vnc/chromium; done` loop, readiness polled the same way.
    let claim = claim_displays(1);
    let (vnc, cdp) = (free_port_range(1), free_port_range(1));
    let script = shell_stack(&dir, claim.n, vnc, cdp, true);
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let p = Proc::spawn(cmd);
    poll_until(Duration::from_secs(60), || vnc_ready(vnc) && cdp_ready(cdp)).expect("shell ready");
    for (what, needle, check) in [
        (
            "x11vnc",
            format!("-rfbport {vnc}"),
            Box::new(|| vnc_ready(vnc)) as Box<dyn Fn() -> bool>,
        ),
        (
            "chromium",
            format!("--remote-debugging-port={cdp} "),
            Box::new(|| cdp_ready(cdp)),
        ),
    ] {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let main = main_pid(&needle);
            let t0 = Instant::now();
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(main),
                nix::sys::signal::Signal::SIGKILL,
            );
            // Wait until the old one is gone, then until the new one answers.
            poll_until(Duration::from_secs(60), || {
                !check() || main_pid(&needle) != main
            });
            poll_until(Duration::from_secs(60), || {
                main_pid(&needle) != main && check()
            })
            .expect("shell restart");
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
            std::thread::sleep(Duration::from_millis(300));
        }
        println!(
            "kill9_to_ready_{what}_shell_loop_ms: {:.0}",
            median(times.clone())
        );
    }
    drop(p);
    for pid in pids_matching(&[
        format!("Xvfb :{}", claim.n),
        format!("-rfbport {vnc}"),
        format!("--remote-debugging-port={cdp}"),
    ]) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Desktop 0's three services are ready (host.toml also runs the proxy and the control plane;
/// this bench measures the desktop).
fn desktop_ready(status: &Value) -> bool {
    status["services"].as_array().is_some_and(|l| {
        let d: Vec<&Value> = l.iter().filter(|s| s["group"] == "desktop@0").collect();
        d.len() == 3 && d.iter().all(|s| s["state"] == "ready")
    })
}

fn uid_of(pid: i32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Sum of PSS over `roots` and all their descendants.
fn tree_pss_kib(roots: &[i32]) -> u64 {
    let mut parent = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The field after the parenthesised command name: state, then ppid.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
        if let Some(pp) = ppid {
            parent.push((pid, pp));
        }
    }
    let mut tree: Vec<i32> = roots.iter().copied().filter(|p| *p > 0).collect();
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree.iter().map(|p| private_and_pss_kib(*p).1).sum()
}

fn cmdline(pid: i32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .replace('\0', " ")
}

fn pids_matching(needles: &[String]) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let c = cmdline(pid);
        if needles.iter().any(|n| c.contains(n.as_str())) {
            out.push(pid);
        }
    }
    out
}

/// The main process (not a child with the same flag, not the bash loop) matching `needle`.
fn main_pid(needle: &str) -> i32 {
    let mut c: Vec<i32> = pids_matching(&[needle.to_string()])
        .into_iter()
        .filter(|p| {
            let cl = cmdline(*p);
            !cl.starts_with("bash") && !cl.contains("--type=") && !cl.contains("crashpad")
        })
        .collect();
    c.sort();
    c.first().copied().unwrap_or(0)
}
