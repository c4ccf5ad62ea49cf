//! The real `zigral control` binary: durability across kill -9 (every message that got a 2xx
//! is there after restart), the first-start admin password printed once, and the real
//! zigral-init supervisor behind /readyz and POST /api/v1/admin/shutdown.
//! Needs `cargo build --release -p zigral -p zigral-init` (make test builds every binary).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};
use zigral_tests::{Proc, bin, free_port, wait_for};

const PW: &str = "durable-admin-password";

fn control(dir: &Path, port: u16, admin_password: Option<&str>, tag: &str) -> Proc {
    let mut c = Command::new(bin("zigral"));
    c.args([
        "control",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--state-dir",
    ])
    .arg(dir)
    .args(["--require-supervisor", "false", "--desktop-mode", "static"])
    .env_remove("ZIGRAL_ADMIN_PASSWORD")
    .env_remove("ZIGRAL_CONFIG")
    .env("ZIGRAL_LOG", "info")
    .stdout(std::fs::File::create(dir.join(format!("stdout-{tag}.txt"))).unwrap())
    .stderr(std::fs::File::create(dir.join(format!("stderr-{tag}.txt"))).unwrap());
    if let Some(p) = admin_password {
        c.env("ZIGRAL_ADMIN_PASSWORD", p);
    }
    Proc::spawn(c)
}

fn wait_healthy(port: u16) {
    wait_for(Duration::from_secs(60), "control plane /healthz", || {
        matches!(zigral_tests::http_get(port, "/healthz"), Ok((200, _))).then_some(())
    });
}

async fn login(http: &Client, port: u16, pw: &str) -> String {
    let v: Value = http
        .post(format!("http://127.0.0.1:{port}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": pw}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["token"].as_str().expect("token").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    zigral_llm::tls::install_default_provider();
    let http = Client::new();
    let port = free_port();
    let mut proc = control(dir.path(), port, Some(PW), "0");
    wait_healthy(port);
    let token = login(&http, port, PW).await;
    let v: Value = http
        .post(format!("http://127.0.0.1:{port}/api/v1/sessions"))
        .bearer_auth(&token)
        .json(&json!({"title": "durability"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = v["id"].as_str().unwrap().to_owned();
    let acked: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    for round in 0..3 {
        let mut writers = Vec::new();
        for w in 0..4 {
            let (http, token, sid, acked) =
                (http.clone(), token.clone(), sid.clone(), acked.clone());
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    let text = format!("r{round}-w{w}-m{i}");
                    let r = http
                        .post(format!(
                            "http://127.0.0.1:{port}/api/v1/sessions/{sid}/messages"
                        ))
                        .bearer_auth(&token)
                        .json(&json!({"role": "user", "content": [{"type": "text", "text": text}]}))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 201 => {
                            let Ok(m) = r.json::<Value>().await else {
                                break;
                            };
                            acked
                                .lock()
                                .unwrap()
                                .push((m["seq"].as_u64().unwrap(), text));
                        }
                        _ => break,
                    }
                }
            }));
        }
        // Let the writers run, then kill -9 in the middle of their appends.
        let before = acked.lock().unwrap().len();
        wait_for(Duration::from_secs(60), "some appends", || {
            (acked.lock().unwrap().len() >= before + 150).then_some(())
        });
        proc.signal(nix::sys::signal::Signal::SIGKILL);
        proc.wait_timeout(Duration::from_secs(10)).expect("killed");
        for w in writers {
            w.await.unwrap();
        }
        drop(proc);
        proc = control(dir.path(), port, Some(PW), &format!("{}", round + 1));
        wait_healthy(port);
        // The old login token is persisted too.
        let mut all: Vec<Value> = Vec::new();
        let mut after: Option<u64> = None;
        loop {
            let q = after.map(|a| format!("&after={a}")).unwrap_or_default();
            let page: Value = http
                .get(format!(
                    "http://127.0.0.1:{port}/api/v1/sessions/{sid}/messages?limit=1000{q}"
                ))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            all.extend(page["messages"].as_array().unwrap().iter().cloned());
            match page["next_after"].as_u64() {
                Some(a) => after = Some(a),
                None => break,
            }
        }
        let acked = acked.lock().unwrap();
        for (seq, text) in acked.iter() {
            let m = all.iter().find(|m| m["seq"].as_u64() == Some(*seq));
            let m = m.unwrap_or_else(|| panic!("round {round}: acked seq {seq} lost"));
            assert_eq!(m["content"][0]["text"], text.as_str(), "seq {seq}");
        }
        assert!(all.len() >= acked.len());
        let seqs: Vec<u64> = all.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert!(
            seqs.iter().enumerate().all(|(i, s)| *s == i as u64),
            "contiguous seqs"
        );
        eprintln!("round {round}: {} acked, {} stored", acked.len(), all.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_prints_a_generated_admin_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    zigral_llm::tls::install_default_provider();
    let http = Client::new();
    let p = control(dir.path(), port, None, "a");
    wait_healthy(port);
    let out = std::fs::read_to_string(dir.path().join("stdout-a.txt")).unwrap();
    let line = out
        .lines()
        .find(|l| l.contains("user: admin"))
        .unwrap_or_else(|| panic!("{out}"));
    let pw = line.split("password: ").nth(1).unwrap().trim().to_owned();
    assert!(pw.len() >= 16, "{line}");
    let token = login(&http, port, &pw).await;
    assert!(token.starts_with("zgl_"));
    let log = std::fs::read_to_string(dir.path().join("stderr-a.txt")).unwrap();
    assert!(!log.contains(&pw), "the password must not reach the log");
    drop(p);
    // Second start: nothing printed, the same password still works.
    let _p = control(dir.path(), port, None, "b");
    wait_healthy(port);
    let out = std::fs::read_to_string(dir.path().join("stdout-b.txt")).unwrap();
    assert!(!out.contains("password"), "{out}");
    login(&http, port, &pw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_makes_the_binary_exit_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    zigral_store::force_schema_version(
        &dir.path().join(zigral_store::DB_FILE),
        zigral_store::SCHEMA_VERSION + 5,
    )
    .unwrap();
    let mut p = control(dir.path(), free_port(), Some(PW), "x");
    let st = p.wait_timeout(Duration::from_secs(30)).expect("exits");
    assert!(!st.success());
    let err = std::fs::read_to_string(dir.path().join("stderr-x.txt")).unwrap();
    assert!(err.contains("newer than this build supports"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_zigral_init_readyz_is_ready_and_admin_shutdown_powers_off() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let port = free_port();
    let cfg = dir.path().join("services.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[[service]]
name = "control"
command = "{zigral}"
args = ["control", "--listen", "127.0.0.1:{port}", "--state-dir", "${{state_dir}}"]
env = {{ ZIGRAL_ADMIN_PASSWORD = "{PW}" }}
ready = {{ tcp = "127.0.0.1:{port}" }}
"#,
            zigral = bin("zigral").display()
        ),
    )
    .unwrap();
    let mut c = Command::new(bin("zigral-init"));
    c.args(["run", "--config"])
        .arg(&cfg)
        .arg("--state-dir")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("init.log")).unwrap());
    let mut init = Proc::spawn(c);
    wait_healthy(port);
    zigral_llm::tls::install_default_provider();
    let http = Client::new();
    let ready = wait_for(
        Duration::from_secs(30),
        "readyz 200",
        || match zigral_tests::http_get(port, "/readyz") {
            Ok((200, body)) => Some(body),
            _ => None,
        },
    );
    assert!(ready.contains("\"supervisor\":\"ok\""), "{ready}");
    let token = login(&http, port, PW).await;
    let r = http
        .post(format!("http://127.0.0.1:{port}/api/v1/admin/shutdown"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Host mode: the supervisor stops every service and exits 0.
    let st = init
        .wait_timeout(Duration::from_secs(60))
        .expect("zigral-init exits");
    assert!(st.success(), "{st:?}");
    assert!(
        zigral_tests::http_get(port, "/healthz").is_err(),
        "control plane stopped"
    );
}
