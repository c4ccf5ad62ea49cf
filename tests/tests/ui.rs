//! The web UI end to end (issue 15): one host-mode stack (config/host.toml under zigral-init, as
//! root) serving the built app (ui/dist/app) at `/`, one fake LLM provider, and Debian's Chromium
//! driven by Playwright (`node ui/e2e/run.mjs`). A person logs in, sees the desktop live (a
//! colour painted on the X display shows in the noVNC canvas), chats with the agent, answers a
//! feedback prompt, approves a gated action, takes control and types through noVNC, enters a 2FA
//! code, records the desktop and downloads the file; an administrator sees two users' desktops
//! live on the dashboard. A wrong password, an expired session and a 403 each show a sentence a
//! person understands. Every page and state is screenshotted at 1280 and 480 px into
//! `target/ui-artifacts/` and scanned with axe-core (no serious or critical violation).
//! Afterwards this test checks from outside what the person relied on: the downloaded
//! recording is video of the desktop's size (ffprobe), and the text typed through noVNC and
//! the 2FA code reached the desktop's page (read back through the actions API).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use zigral_tests::api::{http, login_as};
use zigral_tests::fake_llm::FakeLlm;
use zigral_tests::stack::{ADMIN_PW, Stack};
use zigral_tests::{Proc, repo_root};

/// The 2FA code the person enters when the agent asks.
const CODE: &str = "493817";
/// The agent profile the person picks (it talks to the fake provider).
const PROFILE: &str = "Rocket assistant";

/// What the scripted model does: a screenshot (step 1, a feedback prompt), a gated action
/// (typing matches the profile's risky pattern: a person approves it), its answer; then, on the
/// next message, a request for a 2FA code and its answer.
fn script() -> Value {
    json!([
        {"calls": [{"action": "screenshot"}]},
        {"calls": [{"action": "type", "text": "launch the rocket"}]},
        {"text": "The rocket is launched."},
        {"calls": [{"tool": "request_human_input",
                    "input": {"kind": "2fa", "prompt": "Enter the code we texted you"}}]},
        {"text": "Verified."}
    ])
}

fn ffprobe(file: &Path) -> Value {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(file)
        .output()
        .expect("ffprobe (make test installs ffmpeg)");
    assert!(
        o.status.success(),
        "ffprobe cannot read the downloaded recording {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn node() -> String {
    std::env::var("ZIGRAL_NODE").unwrap_or_else(|_| "node".into())
}

/// The app at the control plane's `/` (the built ui/dist/app); fails unless `/` serves it.
fn app_base(st: &Stack) -> String {
    let (status, body) = http(st.control, "GET", "/", None, None).unwrap();
    assert!(
        status == 200 && body.contains("<main"),
        "the control plane does not serve the web app at / ({status}): {body}"
    );
    format!("http://127.0.0.1:{}/", st.control)
}

#[test]
fn a_person_uses_the_web_ui_from_login_to_the_dashboard() {
    let root = repo_root();
    assert!(
        root.join("ui/dist/app/index.html").exists(),
        "ui/dist/app/index.html is missing: run ui/build.sh (make test builds it before cargo)"
    );
    let art = root.join("target/ui-artifacts");
    let _ = std::fs::remove_dir_all(&art);
    std::fs::create_dir_all(&art).unwrap();
    println!(
        "UI artifacts (screenshots, axe reports, the recording): {}",
        art.display()
    );

    let fake = FakeLlm::start("fake-key-ui-e2e");
    let st = Stack::start(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "ui",
        2,
        &[
            ("ZIGRAL_DESKTOP_POLICY", "per-user"),
            ("ZIGRAL_WARM_POOL", "0"),
            ("ZIGRAL_DESKTOP_IDLE_SECS", "0"),
        ],
    );
    let admin = login_as(st.control, "admin", ADMIN_PW);
    let (_, ada) = st.user(&admin, "ada");
    // A second user with a desktop of their own: the dashboard shows both.
    let (_, bob) = st.user(&admin, "bob");
    let (bob_session, bob_desktop, _) = st.session(&bob);
    // A disabled account: its login is the API's 403.
    let (carol, _) = st.user(&admin, "carol");
    st.ok(
        "PATCH",
        &format!("/api/v1/users/{carol}"),
        &admin,
        Some(json!({"disabled": true})),
    );
    // The administrator's profile every user may pick.
    st.ok(
        "POST",
        "/api/v1/agents",
        &admin,
        Some(json!({
            "name": PROFILE,
            "system_prompt": "Do what the person asks.",
            "provider": {"generation": "computer_20251124", "model": "fake-model",
                         "base_url": fake.base_url(), "max_tokens": 2048, "timeout_secs": 30},
            "max_steps": 20,
            "api_key": fake.key,
            "hitl": {"approve_risky": true, "feedback": true, "checkpoint_every": 5},
            "risky_patterns": ["(?i)launch the rocket"],
        })),
    );
    fake.script(script());

    let base = app_base(&st);
    let mut cmd = Command::new(node());
    cmd.arg(root.join("ui/e2e/run.mjs"))
        .current_dir(root.join("ui"))
        .env("ZIGRAL_E2E_BASE", &base)
        .env("ZIGRAL_E2E_ARTIFACTS", &art)
        .env("ZIGRAL_E2E_ADMIN", "admin")
        .env("ZIGRAL_E2E_ADMIN_PASSWORD", ADMIN_PW)
        .env("ZIGRAL_E2E_USER", "ada")
        .env("ZIGRAL_E2E_USER_PASSWORD", "ada-password")
        .env("ZIGRAL_E2E_DISABLED", "carol")
        .env("ZIGRAL_E2E_DISABLED_PASSWORD", "carol-password")
        .env("ZIGRAL_E2E_PROFILE", PROFILE)
        .env("ZIGRAL_E2E_CODE", CODE)
        .env("ZIGRAL_E2E_OTHER", "bob")
        .env("ZIGRAL_E2E_OTHER_PASSWORD", "bob-password")
        .env("ZIGRAL_E2E_OTHER_SESSION", &bob_session)
        .env("ZIGRAL_E2E_OTHER_DESKTOP", bob_desktop.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut node = Proc::spawn(cmd);
    let err = node.child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("  node: {line}");
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let mut out = Vec::new();
    for line in BufReader::new(node.child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        println!("{line}");
        out.push(line);
    }
    let status = node.child.wait().unwrap();
    let stderr = stderr.join().unwrap_or_default();
    assert!(
        status.success(),
        "the browser scenario failed ({status}); screenshots in {}:\n{}\n{stderr}",
        art.display(),
        out.iter()
            .filter(|l| l.starts_with("FAILED"))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());

    // From outside: what the browser did reached the appliance.
    let facts: Value =
        serde_json::from_str(&std::fs::read_to_string(art.join("facts.json")).unwrap()).unwrap();
    let session = facts["session"]
        .as_str()
        .expect("facts: session")
        .to_owned();

    // The text typed through noVNC and the 2FA code are on the desktop's page (the API shows
    // the code redacted, and never the code itself).
    let text = st
        .actions(&ada, &session, json!([{"action": "page_text"}]))
        .to_string();
    let typed = facts["typed"].as_str().unwrap();
    assert!(
        text.contains(&format!("typed:{typed}<secret:2fa_code>")),
        "the desktop's page does not show what was typed through noVNC and the 2FA code: {text}"
    );
    assert!(!text.contains(CODE), "the API showed the 2FA code: {text}");

    // The downloaded recording is video of the desktop's size.
    let probe = ffprobe(&art.join("recording.mp4"));
    let video = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap_or_else(|| panic!("no video stream in the downloaded recording: {probe}"));
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(1280), Some(800)),
        "{video}"
    );
    let secs: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    assert!(secs > 0.2, "the recording is {secs} s long: {probe}");
    println!(
        "UI end-to-end test passed; screenshots and axe reports in {}",
        art.display()
    );
}
