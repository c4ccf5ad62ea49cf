//! Desktops owned by the control plane (harness = false; prints `name: value` lines), whole
//! stack as `make run` starts it (root: desktops run as their own users):
//! - session create → desktop ready, from the warm pool (goal ≤ 100 ms) and cold (goal
//!   ≤ 1.5 s); Kasm users report 7–10 s container starts (quoted, not measured here);
//! - memory per idle desktop (PSS of Xvfb + x11vnc + Chromium on about:blank, with
//!   `DESKTOPS` of them running so shared pages are split fairly) and how many fit in 4 GiB
//!   (goal ≥ 16), against the same desktops started the peers' way in the same run (a script
//!   starting Xvfb + x11vnc + Chromium `--no-sandbox` per desktop, as root, no user switch).
//!
//! Run: `cargo bench -p zigral-tests --bench desktops` as root (`make bench`).
#![allow(clippy::unwrap_used)] // bench code: a failed unwrap is a failed run

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use zigral_tests::api::login_as;
use zigral_tests::procs::{pids_of_uid, pss_kib, tree, uid_of};
use zigral_tests::stack::{ADMIN_PW, Stack, pooled_ready};
use zigral_tests::{Proc, claim_displays, free_port_range, http_get, wait_for};

const RUNS: usize = 5;
const DESKTOPS: u16 = 4;
const SETTLE: Duration = Duration::from_secs(8);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn tmp() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// Session create → ready, `RUNS` times, each for a fresh user whose session is deleted
/// after (waiting for the pool to be ready again when there is one).
fn create_times(st: &Stack, admin: &str, tag: &str, pool: bool) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..RUNS {
        if pool {
            st.desktops_when(admin, "a ready pool desktop", |l| {
                !pooled_ready(l).is_empty()
            });
        } else {
            st.desktops_when(admin, "no desktops", <[Value]>::is_empty);
        }
        let (_, tok) = st.user(admin, &format!("{tag}{i}"));
        let (sid, _, secs) = st.session(&tok);
        out.push(secs * 1000.0);
        st.ok("DELETE", &format!("/api/v1/sessions/{sid}"), &tok, None);
    }
    out
}

/// PSS of every process of desktop `n`'s user, KiB.
fn desktop_pss_kib(n: u32) -> u64 {
    let uid = uid_of(&format!("zigral-d{n}")).unwrap();
    pids_of_uid(uid).into_iter().map(pss_kib).sum()
}

fn peer_desktops(count: u16) -> (Vec<Proc>, u64) {
    let claim = claim_displays(u32::from(count));
    let (vnc, cdp) = (free_port_range(count), free_port_range(count));
    let dir = tmp().join(format!("bench-peer-desktops-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut procs = Vec::new();
    for i in 0..count {
        let d = claim.n + u32::from(i);
        let script = format!(
            "Xvfb :{d} -screen 0 1280x800x24 -nolisten tcp -noreset & \
             while ! [ -e /tmp/.X11-unix/X{d} ]; do sleep 0.02; done; \
             x11vnc -display :{d} -rfbport {v} -localhost -forever -shared -nopw -quiet >/dev/null 2>&1 & \
             DISPLAY=:{d} chromium --no-sandbox --disable-background-networking --disable-component-update \
             --disable-sync --no-first-run --disable-dev-shm-usage --disable-gpu --no-default-browser-check \
             --password-store=basic --remote-debugging-address=127.0.0.1 --remote-debugging-port={c} \
             --user-data-dir={dir}/p{i} --window-size=1280,800 about:blank >/dev/null 2>&1 & wait",
            v = vnc + i,
            c = cdp + i,
            dir = dir.display()
        );
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        procs.push(Proc::spawn(cmd));
    }
    for i in 0..count {
        wait_for(Duration::from_secs(60), "peer Chromium", || {
            http_get(cdp + i, "/json/version")
                .ok()
                .filter(|(c, _)| *c == 200)
        });
    }
    std::thread::sleep(SETTLE);
    let total: u64 = procs.iter().flat_map(|p| tree(p.pid())).map(pss_kib).sum();
    let _ = std::fs::remove_dir_all(&dir);
    drop(claim);
    (procs, total)
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "run as root: desktops run as their own users"
    );
    // Warm pool of one: sessions take the ready desktop; the pool refills in the background.
    let warm = {
        let st = Stack::start(
            tmp(),
            "bench-warm",
            DESKTOPS + 1,
            &[
                ("ZIGRAL_WARM_POOL", "1"),
                ("ZIGRAL_DESKTOP_POLICY", "per-user"),
            ],
        );
        let admin = login_as(st.control, "admin", ADMIN_PW);
        let warm = create_times(&st, &admin, "w", true);

        // Memory: DESKTOPS idle desktops on about:blank (users' sessions), all at once.
        st.desktops_when(&admin, "the pool ready", |l| !pooled_ready(l).is_empty());
        let mut ns = Vec::new();
        for i in 0..DESKTOPS {
            let (_, tok) = st.user(&admin, &format!("m{i}"));
            ns.push(st.session(&tok).1);
        }
        std::thread::sleep(SETTLE);
        let per: Vec<u64> = ns.iter().map(|n| desktop_pss_kib(*n)).collect();
        let mean = per.iter().sum::<u64>() as f64 / per.len() as f64 / 1024.0;
        println!("idle_desktop_pss_mib: {mean:.0}");
        println!(
            "idle_desktop_pss_mib_each: {:.0?}",
            per.iter().map(|k| *k as f64 / 1024.0).collect::<Vec<_>>()
        );
        println!("idle_desktops_in_4gib: {:.1}", 4096.0 / mean);
        (warm, mean)
    };
    let (warm, ours_mib) = warm;
    let cold = {
        let st = Stack::start(tmp(), "bench-cold", 2, &[("ZIGRAL_WARM_POOL", "0")]);
        let admin = login_as(st.control, "admin", ADMIN_PW);
        create_times(&st, &admin, "c", false)
    };
    let (w, c) = (median(warm.clone()), median(cold.clone()));
    println!("session_create_warm_ms: {w:.0}");
    println!("session_create_warm_ms_runs: {warm:.0?}");
    println!("session_create_cold_ms: {c:.0}");
    println!("session_create_cold_ms_runs: {cold:.0?}");
    println!("session_create_cold_vs_warm: {:.1}x", c / w);
    println!("kasm_container_start_s_quoted: 7-10 (users' reports, not measured here)");

    let (peers, total) = peer_desktops(DESKTOPS);
    let peer_mib = total as f64 / f64::from(DESKTOPS) / 1024.0;
    println!("peer_idle_desktop_pss_mib: {peer_mib:.0}");
    println!("peer_idle_desktops_in_4gib: {:.1}", 4096.0 / peer_mib);
    println!("idle_desktop_pss_vs_peer: {:.2}x", ours_mib / peer_mib);
    drop(peers);
}
