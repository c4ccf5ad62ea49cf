//! Signed A/B updates through the real zigral-init: the `updater` template runs
//! `zigral-init update apply` on bundles built with tar + zstd and signed with Debian's
//! minisign. A good bundle is committed and its version answers; a refused one (not newer, a
//! tampered byte) changes nothing; a broken one (its service never becomes ready) rolls back
//! by itself within the deadline, restoring the database when the store schema changed; an
//! update cut short by a restart of zigral-init comes back on the good slot.
//!
//! The updated "service" is a slot's `bin/zigral` shell script serving the slot directory with
//! python's http.server, so `GET /release` shows which slot answers. As in the image, the
//! services' definitions live in the slot too (the config file is a link to
//! `slots/current/init.toml`): `GET /note` shows the argument the active slot's definition gave.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A slot tree: `bin/zigral` (a script) and `release`.
fn slot_tree(dir: &Path, version: &str, serial: u64, schema: u64, script: &str) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let bin = dir.join("bin/zigral");
    std::fs::write(&bin, script).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.join("release"),
        format!("version={version}\nserial={serial}\nschema={schema}\ngit=test\n"),
    )
    .unwrap();
}

const SERVE: &str = "#!/bin/sh\ncd \"$(dirname \"$0\")/..\" && echo \"$2\" > note && exec python3 -m http.server --bind 127.0.0.1 \"$1\"\n";

struct Keys {
    secret: PathBuf,
}

/// Builds `<ready>/<id>.tar.zst` (+ `.minisig`) from `tree`.
fn bundle(
    keys: &Keys,
    tree: &Path,
    ready: &Path,
    id: &str,
    version: &str,
    serial: u64,
    schema: u64,
) {
    std::fs::create_dir_all(ready).unwrap();
    let out = ready.join(format!("{id}.tar.zst"));
    sh(Command::new("sh").arg("-c").arg(format!(
        "tar -C '{}' -cf - . | zstd -q -19 -o '{}'",
        tree.display(),
        out.display()
    )));
    sh(Command::new("minisign").args([
        "-S",
        "-s",
        keys.secret.to_str().unwrap(),
        "-m",
        out.to_str().unwrap(),
        "-t",
        &format!("zigral-bundle version={version} serial={serial} schema={schema} git=test"),
    ]));
}

/// Writes the slot's service definitions (`init.toml`), whose `app` gets `note` as argument.
fn slot_config(slot: &Path, dir: &Path, port: u16, deadline: &str, note: &str) {
    std::fs::write(slot.join("init.toml"), config(dir, port, deadline, note)).unwrap();
}

fn config(dir: &Path, port: u16, deadline: &str, note: &str) -> String {
    let slots = dir.join("slots");
    format!(
        r#"
[settings]
slots = "{slots}"

[[service]]
name = "app"
command = "{slots}/current/bin/zigral"
args = ["{port}", "{note}"]
ready = {{ http = "http://127.0.0.1:{port}/release", timeout = "30s", interval = "100ms" }}
stop_timeout = "3s"

[[template]]
name = "updater"
instances = []
params = {{ id = "none", force = "0" }}

[[template.service]]
name = "apply"
command = "{bin}"
args = ["update", "apply", "--id", "${{id}}", "--force", "${{force}}", "--state-dir", "${{state_dir}}",
        "--slots", "{slots}", "--key", "{key}", "--restart", "app", "--gate", "app",
        "--deadline", "{deadline}"]
restart = {{ policy = "never" }}
"#,
        slots = slots.display(),
        bin = BIN,
        key = dir.join("update.pub").display(),
    )
}

fn status_file(init: &Init) -> Value {
    std::fs::read(init.state.join("updates/status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// Spawns the updater for `id` and waits until its status says it has finished.
fn apply(init: &Init, id: &str, force: bool) -> Value {
    let before = status_file(init)["started_ms"].clone();
    let _ = init.call(json!({"cmd":"destroy","template":"updater","instance":0}));
    init.call(json!({"cmd":"spawn","template":"updater","instance":0,
        "params":{"id":id,"force":if force {"1"} else {"0"}}}))
        .unwrap();
    let t0 = Instant::now();
    loop {
        let s = status_file(init);
        if s["id"] == id
            && s["started_ms"] != before
            && ["committed", "rolled_back", "failed"].contains(&s["phase"].as_str().unwrap_or(""))
        {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "update {id} did not finish: {s}\n{}",
            init.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the running `app` was told by its slot's definition.
fn note(port: u16) -> String {
    let (code, body) = zigral_tests::http_get(port, "/note").unwrap();
    assert_eq!(code, 200);
    body.trim().to_string()
}

fn answering_version(port: u16) -> String {
    let (code, body) = zigral_tests::http_get(port, "/release").unwrap();
    assert_eq!(code, 200);
    body.lines()
        .find_map(|l| l.strip_prefix("version="))
        .unwrap_or_default()
        .to_string()
}

fn active(dir: &Path) -> String {
    std::fs::read_link(dir.join("slots/current"))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn updates_commit_refuse_roll_back_and_survive_a_restart() {
    let dir = scratch("update");
    let keys = Keys {
        secret: dir.join("update.key"),
    };
    sh(Command::new("minisign").args([
        "-G",
        "-W",
        "-p",
        dir.join("update.pub").to_str().unwrap(),
        "-s",
        keys.secret.to_str().unwrap(),
    ]));
    // The image's layout: slot a holds version 1.0.0, `current` points to it.
    let port = zigral_tests::free_port();
    slot_tree(&dir.join("slots/a"), "1.0.0", 1, 4, SERVE);
    slot_config(&dir.join("slots/a"), &dir, port, "8s", "defined by 1.0.0");
    std::os::unix::fs::symlink("a", dir.join("slots/current")).unwrap();
    let cfg = dir.join("services.toml");
    std::os::unix::fs::symlink(dir.join("slots/current/init.toml"), &cfg).unwrap();
    let init = Init::start(&dir, &cfg, &[]);
    init.wait_state("app", &["ready"], Duration::from_secs(30));
    assert_eq!(answering_version(port), "1.0.0");
    assert_eq!(note(port), "defined by 1.0.0");
    let ready = init.state.join("updates/ready");
    let db = init.state.join("zigral.redb");
    std::fs::write(&db, "acknowledged before the updates\n").unwrap();

    // A good bundle: committed, the new version answers from slot b.
    let good = dir.join("tree-good");
    slot_tree(&good, "1.0.1", 2, 4, SERVE);
    // First without its service definitions: refused, nothing changed.
    bundle(&keys, &good, &ready, "u0", "1.0.1", 2, 4);
    let s = apply(&init, "u0", false);
    assert_eq!(s["phase"], "failed", "{s}");
    assert!(
        s["message"].as_str().unwrap().contains("no init.toml"),
        "{s}"
    );
    assert_eq!(active(&dir), "a");
    slot_config(&good, &dir, port, "8s", "defined by 1.0.1");
    bundle(&keys, &good, &ready, "u1", "1.0.1", 2, 4);
    let s = apply(&init, "u1", false);
    assert_eq!(s["phase"], "committed", "{s}");
    assert_eq!(
        (s["version"].as_str(), s["from_version"].as_str()),
        (Some("1.0.1"), Some("1.0.0"))
    );
    assert_eq!(answering_version(port), "1.0.1");
    assert_eq!(
        note(port),
        "defined by 1.0.1",
        "the new slot's definition runs"
    );
    assert_eq!(active(&dir), "b");
    assert!(
        !init.state.join("updates/gate").exists(),
        "gate file left behind"
    );

    // The same bundle again: not newer, refused, nothing changed.
    let s = apply(&init, "u1", false);
    assert_eq!(s["phase"], "failed", "{s}");
    assert!(s["message"].as_str().unwrap().contains("not newer"), "{s}");
    assert_eq!(active(&dir), "b");

    // A tampered byte: refused by the signature, nothing changed.
    let newer = dir.join("tree-newer");
    slot_tree(&newer, "1.0.2", 3, 4, SERVE);
    slot_config(&newer, &dir, port, "8s", "defined by 1.0.2");
    bundle(&keys, &newer, &ready, "u2", "1.0.2", 3, 4);
    let f = ready.join("u2.tar.zst");
    let mut b = std::fs::read(&f).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    std::fs::write(&f, b).unwrap();
    let s = apply(&init, "u2", false);
    assert_eq!(s["phase"], "failed", "{s}");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("signature does not match"),
        "{s}"
    );
    assert_eq!(
        (active(&dir), answering_version(port)),
        ("b".into(), "1.0.1".into())
    );

    // A broken bundle that also migrates the store (schema 5): its service writes to the
    // database and never becomes ready. The gate fails, slot b comes back, and the database
    // is the pre-update copy again (version 1.0.1 could not open schema 5).
    let broken = dir.join("tree-broken");
    slot_tree(
        &broken,
        "1.1.0",
        4,
        5,
        &format!(
            "#!/bin/sh\necho 'written by the broken version' >> '{}'\nexec sleep 1000\n",
            db.display()
        ),
    );
    slot_config(&broken, &dir, port, "8s", "defined by 1.1.0");
    bundle(&keys, &broken, &ready, "u3", "1.1.0", 4, 5);
    let t0 = Instant::now();
    let s = apply(&init, "u3", false);
    let took = t0.elapsed();
    assert_eq!(s["phase"], "rolled_back", "{s}");
    let msg = s["message"].as_str().unwrap();
    assert!(
        msg.contains("failed its health check") && msg.contains("rolled back to version 1.0.1"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(40), "rollback took {took:?}");
    assert_eq!(
        (active(&dir), answering_version(port), note(port)),
        ("b".into(), "1.0.1".into(), "defined by 1.0.1".into())
    );
    assert_eq!(
        std::fs::read_to_string(&db).unwrap(),
        "acknowledged before the updates\n"
    );

    // An update cut short: zigral-init stops (as at a reboot) while the broken bundle is in its
    // health gate; the next start puts slot b back before any service runs.
    // (A long gate deadline for this part: slot b's definitions, written through the link.)
    slot_config(&dir.join("slots/b"), &dir, port, "600s", "defined by 1.0.1");
    init.stop_keeping_state(Duration::from_secs(30));
    let init = Init::start(&dir, &cfg, &[]);
    init.wait_state("app", &["ready"], Duration::from_secs(30));
    let _ = init.call(json!({"cmd":"destroy","template":"updater","instance":0}));
    init.call(
        json!({"cmd":"spawn","template":"updater","instance":0,"params":{"id":"u3","force":"1"}}),
    )
    .unwrap();
    let t0 = Instant::now();
    while status_file(&init)["phase"] != "gate" {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{}",
            status_file(&init)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(active(&dir), "a");
    assert!(init.state.join("updates/gate").exists());
    init.stop_keeping_state(Duration::from_secs(30));
    let init = Init::start(&dir, &cfg, &[]);
    init.wait_state("app", &["ready"], Duration::from_secs(30));
    assert_eq!(
        (active(&dir), answering_version(port), note(port)),
        ("b".into(), "1.0.1".into(), "defined by 1.0.1".into())
    );
    let s = status_file(&init);
    assert_eq!(s["phase"], "rolled_back", "{s}");
    assert!(
        s["message"].as_str().unwrap().contains("interrupted"),
        "{s}"
    );
    assert!(
        init.output()
            .contains("zigral-update: a restart interrupted the update")
    );
    assert!(!init.state.join("updates/gate").exists());
    assert_eq!(
        std::fs::read_to_string(&db).unwrap(),
        "acknowledged before the updates\n"
    );

    // An updater killed before it switched (its gate file and an unfinished status left
    // behind, as after SIGKILL in the unpacking phase): the next start of zigral-init lifts
    // the gate and marks the update failed, nothing changed.
    let mut s = status_file(&init);
    s["id"] = json!("u9");
    s["phase"] = json!("unpacking");
    s["message"] = json!("unpacking 9.9.9 into slot a");
    s["finished_ms"] = Value::Null;
    std::fs::write(
        init.state.join("updates/status.json"),
        serde_json::to_vec(&s).unwrap(),
    )
    .unwrap();
    std::fs::write(init.state.join("updates/gate"), "update in progress\n").unwrap();
    init.stop_keeping_state(Duration::from_secs(30));
    let init = Init::start(&dir, &cfg, &[]);
    init.wait_state("app", &["ready"], Duration::from_secs(30));
    assert!(!init.state.join("updates/gate").exists(), "stale gate kept");
    let s = status_file(&init);
    assert_eq!(
        (s["id"].as_str(), s["phase"].as_str()),
        (Some("u9"), Some("failed")),
        "{s}"
    );
    assert!(
        s["message"].as_str().unwrap().contains("nothing changed"),
        "{s}"
    );
    assert!(
        init.output()
            .contains("zigral-update: update u9: interrupted")
    );
    assert_eq!(
        (active(&dir), answering_version(port)),
        ("b".into(), "1.0.1".into())
    );
}
