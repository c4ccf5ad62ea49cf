//! Fuzzing with schemathesis (PyPI, installed into <repo>/.venv by scripts/setup-python.sh)
//! against the served OpenAPI document, authenticated with an admin API token: no 5xx, every
//! status, content type and body conforms to the document, and invalid input is rejected.
//! Fails, naming the setup command, when the venv is missing.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::process::Stdio;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let venv = std::env::var_os("ZIGRAL_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| zigral_tests::repo_root().join(".venv"));
    let st_bin = venv.join("bin/schemathesis");
    assert!(
        st_bin.exists(),
        "{} missing: run scripts/setup-python.sh (make test does)",
        st_bin.display()
    );
    let s = start(|_| {}).await;
    let admin = s.admin().await;
    let (st, t) = s
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({"name": "fuzz", "scopes": ["read", "write", "control", "admin"]})),
        )
        .await;
    assert_eq!(st, 201);
    let token = t["token"].as_str().unwrap().to_owned();
    // Some data for the fuzzer to find.
    s.session(&admin, Some("system prompt")).await;
    let doc = s
        .http
        .get(s.url("/api/v1/openapi.json"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let schema = s.dir.path().join("openapi.json");
    std::fs::write(&schema, doc).unwrap();
    let examples = std::env::var("ZIGRAL_FUZZ_EXAMPLES").unwrap_or_else(|_| "25".into());
    let seed = std::env::var("ZIGRAL_FUZZ_SEED").unwrap_or_else(|_| "20261121".into());
    // Routes that drive the desktop run against a display and a CDP port nothing serves (see
    // common::start): they must answer a documented 503 JSON error, which schemathesis'
    // not_a_server_error check refuses by design; they are fuzzed in a second run with every
    // other check (an undocumented 500 or a panic still fails status_code_conformance). So
    // must /admin/services, which asks zigral-init (not running here).
    const DESKTOP: &str =
        "/(actions|screenshot|checkpoints|type-secret|undo|input)|/admin/services$";
    let all = "not_a_server_error,status_code_conformance,content_type_conformance,\
               response_schema_conformance,negative_data_rejection";
    let desktop = "status_code_conformance,content_type_conformance,\
                   response_schema_conformance,negative_data_rejection";
    let mut stdout = String::new();
    for (filter, checks) in [
        (["--exclude-path-regex", DESKTOP], all),
        (["--include-path-regex", DESKTOP], desktop),
    ] {
        let out = tokio::process::Command::new(&st_bin)
            .arg("run")
            .arg(&schema)
            .args(["--url", &s.base])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["--checks", checks])
            .args(filter)
            .args(["--phases", "examples,coverage,fuzzing"])
            .args([
                "--max-examples",
                &examples,
                "--seed",
                &seed,
                "--workers",
                "1",
            ])
            .args(["--request-timeout", "30", "--generation-allow-x00", "false"])
            // Powers the host off through the supervisor: tested with the real zigral-init in
            // tests/process.rs instead.
            .args(["--exclude-path", "/api/v1/admin/shutdown"])
            // Draining refuses every new session (503) for the rest of the run.
            .args(["--exclude-path", "/api/v1/admin/draining"])
            .env("SCHEMATHESIS_HOOKS", "")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .expect("run schemathesis");
        let so = String::from_utf8_lossy(&out.stdout).into_owned();
        let se = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "schemathesis ({filter:?}) failed ({:?}):\n{so}\n{se}",
            out.status
        );
        stdout.push_str(&so);
    }
    eprintln!(
        "{}",
        stdout
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
