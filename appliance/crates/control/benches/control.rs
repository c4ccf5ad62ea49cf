//! Control-plane benchmark (`name: value` lines): durable message appends over HTTP (1 and 16
//! clients, p50/p99) against Redis RPUSH with `appendonly yes` + `appendfsync always` measured
//! in the same run; context-window assembly on a 100,000-message session (goal p50 <= 5 ms);
//! idle RSS of the real `zigral control` process (goal <= 20 MiB) next to redis-server's.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pct;
use reqwest::Client;
use serde_json::{Value, json};
use zigral_store::NewMessage;

const PW: &str = "bench-admin-password";

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A message body of about 330 bytes of JSON, like the store probe's.
fn body(i: usize) -> Value {
    let text = format!(
        "message {i}: the agent clicked the login button, waited for the page to settle and \
         read the heading; next it will type the user name into the form field and press Enter \
         to continue with the task the user asked for in the chat. pad pad pad"
    );
    json!({"role": "assistant", "content": [{"type": "text", "text": text}]})
}

async fn appends(
    http: &Client,
    base: &str,
    token: &str,
    sid: &str,
    clients: usize,
    per: usize,
) -> (f64, Vec<f64>) {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url, token) = (
            http.clone(),
            format!("{base}/api/v1/sessions/{sid}/messages"),
            token.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body(c * per + i))
                    .send()
                    .await
                    .expect("append");
                assert_eq!(r.status(), 201);
                let _ = r.bytes().await;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let rate = (clients * per) as f64 / t0.elapsed().as_secs_f64();
    (rate, all)
}

struct Redis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis() -> Option<Redis> {
    let dir = tempfile::tempdir().ok()?;
    let port = zigral_tests::free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let r = Redis {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if zigral_tests::tcp_open(port) {
            return Some(r);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// (requests/s, p50 µs, p99 µs) from redis-benchmark's CSV.
fn redis_bench(port: u16, clients: usize, n: usize) -> Option<(f64, f64, f64)> {
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-t",
            "rpush",
            "-n",
            &n.to_string(),
            "-c",
            &clients.to_string(),
            "-d",
            "330",
            "--csv",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("\"RPUSH"))?;
    let f: Vec<f64> = line
        .split(',')
        .skip(1)
        .filter_map(|x| x.trim_matches('"').parse().ok())
        .collect();
    // rps, avg, min, p50, p95, p99, max (ms)
    Some((f[0], f[3] * 1000.0, f[5] * 1000.0))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(run());
}

async fn run() {
    zigral_llm::tls::install_default_provider();
    // The tests' kit: a port-0 control plane over a temp store, no desktop.
    let srv = common::start(|_| {}).await;
    let store = srv.state.store().clone();
    let base = srv.base.clone();
    let http = Client::builder()
        .pool_max_idle_per_host(32)
        .build()
        .expect("client");
    let token = srv.admin().await;
    let sid = srv.session(&token, None).await;

    // Warm-up, then 1 client and 16 clients.
    appends(&http, &base, &token, &sid, 1, 100).await;
    let (rate1, mut lat1) = appends(&http, &base, &token, &sid, 1, 2000).await;
    let (rate16, mut lat16) = appends(&http, &base, &token, &sid, 16, 250).await;
    let redis = start_redis();
    let r1 = redis.as_ref().and_then(|r| redis_bench(r.port, 1, 2000));
    let r16 = redis.as_ref().and_then(|r| redis_bench(r.port, 16, 4000));
    println!("append_durable_1client_per_s: {rate1:.0}");
    println!("append_durable_1client_p50_us: {:.0}", pct(&mut lat1, 0.5));
    println!("append_durable_1client_p99_us: {:.0}", pct(&mut lat1, 0.99));
    println!("append_durable_16clients_per_s: {rate16:.0}");
    println!(
        "append_durable_16clients_p50_us: {:.0}",
        pct(&mut lat16, 0.5)
    );
    println!(
        "append_durable_16clients_p99_us: {:.0}",
        pct(&mut lat16, 0.99)
    );
    match (r1, r16) {
        (Some(a), Some(b)) => {
            println!("redis_rpush_fsync_always_1client_per_s: {:.0}", a.0);
            println!("redis_rpush_fsync_always_1client_p50_us: {:.0}", a.1);
            println!("redis_rpush_fsync_always_1client_p99_us: {:.0}", a.2);
            println!("redis_rpush_fsync_always_16clients_per_s: {:.0}", b.0);
            println!("redis_rpush_fsync_always_16clients_p50_us: {:.0}", b.1);
            println!("redis_rpush_fsync_always_16clients_p99_us: {:.0}", b.2);
            println!("append_1client_vs_redis: {:.2}x", rate1 / a.0);
            println!("append_16clients_vs_redis: {:.2}x", rate16 / b.0);
        }
        _ => {
            println!("redis_rpush_fsync_always: unavailable (install redis-server and redis-tools)")
        }
    }
    let redis_rss = redis.as_ref().and_then(|r| rss_kib(r.child.id()));
    drop(redis);

    // Context window over a 100,000-message session (built in durable batches of 1,000).
    let big: Value = http
        .post(format!("{base}/api/v1/sessions"))
        .bearer_auth(&token)
        .json(&json!({"title": "big", "system_prompt": "You are a careful browser agent."}))
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    let big_id = big["id"].as_str().expect("id").to_owned();
    let t0 = Instant::now();
    for b in 0..100 {
        let msgs: Vec<NewMessage> = (0..1000)
            .map(|i| {
                let v = body(b * 1000 + i);
                let parts: Vec<zigral_control::api::messages::ContentPart> =
                    serde_json::from_value(v["content"].clone()).expect("parts");
                NewMessage {
                    role: "assistant".into(),
                    tokens: zigral_control::api::messages::message_tokens(&parts),
                    content: v["content"].clone(),
                    author: "bench".into(),
                }
            })
            .collect();
        store
            .append_messages(&big_id, msgs)
            .await
            .expect("bulk append");
    }
    println!("build_100k_session_s: {:.1}", t0.elapsed().as_secs_f64());
    let session = store.get_session(&big_id).expect("get").expect("exists");
    for budget in [8_000u32, 100_000] {
        let mut lat = Vec::new();
        let mut n = 0;
        for _ in 0..200 {
            let t = Instant::now();
            let w = zigral_control::context::assemble(&store, &session, budget).expect("window");
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            n = w.messages.len();
        }
        println!("context_100k_budget{budget}_turns: {n}");
        println!(
            "context_100k_budget{budget}_p50_us: {:.0}",
            pct(&mut lat, 0.5)
        );
        println!(
            "context_100k_budget{budget}_p99_us: {:.0}",
            pct(&mut lat, 0.99)
        );
        if budget == 8_000 {
            println!(
                "context_100k_p50_vs_goal_5ms: {:.3}x",
                pct(&mut lat, 0.5) / 5000.0
            );
        }
    }
    let mut lat = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let r = http
            .get(format!(
                "{base}/api/v1/sessions/{big_id}/context?budget_tokens=8000"
            ))
            .bearer_auth(&token)
            .send()
            .await
            .expect("context");
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    println!(
        "context_100k_http_budget8000_p50_us: {:.0}",
        pct(&mut lat, 0.5)
    );

    // Idle RSS of the real binary on a fresh state dir.
    let exe = std::env::current_exe().expect("exe");
    let zigral: PathBuf = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("zigral"))
        .expect("dir");
    if zigral.exists() {
        let sdir = tempfile::tempdir().expect("tempdir");
        let port = zigral_tests::free_port();
        let mut child = Command::new(&zigral)
            .args([
                "control",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--require-supervisor",
                "false",
                "--state-dir",
            ])
            .arg(sdir.path())
            .env("ZIGRAL_ADMIN_PASSWORD", PW)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn zigral control");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && !matches!(zigral_tests::http_get(port, "/healthz"), Ok((200, _)))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        // One login and a few requests, then idle.
        let _ = http
            .post(format!("http://127.0.0.1:{port}/api/v1/auth/login"))
            .json(&json!({"username": "admin", "password": PW}))
            .send()
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = rss_kib(child.id()).unwrap_or(0) as f64 / 1024.0;
        let _ = child.kill();
        let _ = child.wait();
        println!("control_idle_rss_mib: {rss:.1}");
        println!("control_idle_rss_vs_goal_20mib: {:.2}x", rss / 20.0);
        if let Some(r) = redis_rss {
            let r = r as f64 / 1024.0;
            println!("redis_rss_after_bench_mib: {r:.1}");
        }
    } else {
        println!("control_idle_rss_mib: unavailable (cargo build --release -p zigral first)");
    }
}
