//! Signed updates, the control plane's side: uploads are checked (signature, key, manifest,
//! version, size) and every refusal leaves nothing behind; a good bundle lands in
//! `updates/ready/` and a real zigral-init spawns its `updater` template (here a harmless
//! `/bin/sleep 30`) with the bundle's id; the updater's status shows in the API; writes wait
//! while the health gate is on; the updates folder takes a good pair and refuses a bad one;
//! an update's outcome is audited once; a gate left by a killed updater is lifted.
//!
//! Needs the `minisign` CLI and `cargo build --release -p zigral-init`.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use zigral_tests::{Proc, bin};

use common::*;

/// A minisign key pair in `dir` (no password).
fn keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (p, s) = (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&p)
        .arg("-s")
        .arg(&s)
        .stdin(Stdio::null())
        .output()
        .expect("minisign is installed");
    assert!(out.status.success(), "{out:?}");
    (p, s)
}

/// A bundle (`size` arbitrary bytes) signed by `secret` with `comment` as trusted comment;
/// answers its path and the signature's text.
fn bundle(dir: &Path, name: &str, size: usize, secret: &Path, comment: &str) -> (PathBuf, String) {
    let f = dir.join(format!("{name}.tar.zst"));
    let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&f, bytes).unwrap();
    let out = Command::new("minisign")
        .args(["-S", "-s"])
        .arg(secret)
        .arg("-m")
        .arg(&f)
        .args(["-t", comment])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let sig = std::fs::read_to_string(dir.join(format!("{name}.tar.zst.minisig"))).unwrap();
    (f, sig)
}

fn manifest(version: &str, serial: u64) -> String {
    format!("zigral-bundle version={version} serial={serial} schema=4 git=abc")
}

/// zigral-init running `config` (with its own state dir); its socket answers `status`.
struct Init {
    _proc: Proc,
    socket: PathBuf,
}

const UPDATER_TEMPLATE: &str = r#"
[[template]]
name = "updater"
instances = []
params = { id = "none", force = "0" }
[[template.service]]
name = "updater"
command = "/bin/sleep"
args = ["30"]
restart = { policy = "never" }
"#;

async fn init(dir: &Path, config: &str) -> Init {
    let state = dir.join("init-state");
    std::fs::create_dir_all(&state).unwrap();
    let cfg = dir.join("init.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut c = Command::new(bin("zigral-init"));
    c.args(["run", "--config"])
        .arg(&cfg)
        .arg("--state-dir")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("init.log")).unwrap());
    let proc = Proc::spawn(c);
    let socket = state.join("init.sock");
    let s = socket.clone();
    until("zigral-init answers", || {
        let s = s.clone();
        async move { zigral_control::vdi::init::status(&s).await.ok() }
    })
    .await;
    Init {
        _proc: proc,
        socket,
    }
}

/// Awaits `f` answering `Some` (polled every 50 ms, at most 30 s).
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything a test needs: keys, a release file (1.2.3 serial 5), zigral-init with the
/// updater template (unless `with_init` is false), a control plane using them.
struct Rig {
    srv: Server,
    tmp: tempfile::TempDir,
    secret: PathBuf,
    other_secret: PathBuf,
    init: Option<Init>,
    admin: String,
}

async fn rig(init_config: Option<&str>, tweak: impl FnOnce(&mut zigral_control::Config)) -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let (public, secret) = keypair(tmp.path(), "appliance");
    let (_, other_secret) = keypair(tmp.path(), "other");
    let release = tmp.path().join("release");
    std::fs::write(
        &release,
        "profile=network\nversion=1.2.3\nserial=5\nschema=4\ngit=cafe\n",
    )
    .unwrap();
    let init = match init_config {
        Some(c) => Some(init(tmp.path(), c).await),
        None => None,
    };
    let socket = init.as_ref().map(|i| i.socket.clone());
    let srv = start(|c| {
        c.update_key = Some(public);
        c.release_file = Some(release);
        if let Some(s) = socket {
            c.init_socket = s;
        }
        tweak(c);
    })
    .await;
    let admin = srv.admin().await;
    Rig {
        srv,
        tmp,
        secret,
        other_secret,
        init,
        admin,
    }
}

impl Rig {
    fn updates(&self) -> PathBuf {
        self.srv.dir.path().join("updates")
    }

    /// Names in `updates/ready/` (sorted).
    fn ready(&self) -> Vec<String> {
        names(&self.updates().join("ready"))
    }

    fn sign(&self, name: &str, comment: &str) -> (PathBuf, String) {
        bundle(self.tmp.path(), name, 4096, &self.secret, comment)
    }

    /// `POST /api/v1/admin/update` with `bundle` bytes, `signature` and extra fields.
    async fn upload(
        &self,
        bundle: &[u8],
        sig: &str,
        extra: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let boundary = "zigral-test-boundary-7d1f";
        let mut body = Vec::new();
        let mut part = |name: &str, file: bool, data: &[u8]| {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let fname = if file { "; filename=\"b.tar.zst\"" } else { "" };
            body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"{fname}\r\n\r\n")
                    .as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        };
        part("signature", false, sig.as_bytes());
        for (k, v) in extra {
            part(k, false, v.as_bytes());
        }
        part("bundle", true, bundle);
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let r = self
            .srv
            .http
            .post(self.srv.url("/api/v1/admin/update"))
            .bearer_auth(&self.admin)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let v = serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null);
        (status, v, headers)
    }

    async fn upload_file(&self, f: &Path, sig: &str, extra: &[(&str, &str)]) -> (u16, Value) {
        let (s, v, _) = self.upload(&std::fs::read(f).unwrap(), sig, extra).await;
        (s, v)
    }

    fn audit(&self, action: &str) -> Vec<zigral_store::AuditRecord> {
        self.srv
            .state
            .store()
            .list_audit(None, 1000)
            .unwrap()
            .into_iter()
            .filter(|a| a.action == action)
            .collect()
    }

    /// The updater instance's params, if zigral-init runs one.
    async fn updater(&self) -> Option<std::collections::BTreeMap<String, String>> {
        let st = zigral_control::vdi::init::status(&self.init.as_ref()?.socket)
            .await
            .unwrap();
        st.group("updater@0").map(|g| g.params.clone())
    }

    /// No partial or refused upload is left in `updates/`.
    fn no_incoming(&self) {
        let left: Vec<_> = names(&self.updates())
            .into_iter()
            .filter(|n| n.starts_with(".incoming"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_upload_spawns_the_updater_and_a_second_one_waits() {
    let r = rig(Some(UPDATER_TEMPLATE), |_| {}).await;
    let mut events = r.srv.state.events().subscribe();
    let (f, sig) = r.sign("good", &manifest("1.3.0", 9));
    let (s, v) = r.upload_file(&f, &sig, &[]).await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with('u') && id.len() == "u1700000000-abcd".len(),
        "{id}"
    );
    assert_eq!(
        (&v["version"], &v["from_version"], &v["forced"]),
        (&json!("1.3.0"), &json!("1.2.3"), &json!(false))
    );
    assert_eq!(
        r.ready(),
        vec![format!("{id}.tar.zst"), format!("{id}.tar.zst.minisig")]
    );
    assert_eq!(
        std::fs::read(r.updates().join("ready").join(format!("{id}.tar.zst"))).unwrap(),
        std::fs::read(&f).unwrap(),
        "the bundle arrives intact"
    );
    r.no_incoming();
    let params = r.updater().await.expect("updater@0 spawned");
    assert_eq!(params.get("id"), Some(&id));
    assert_eq!(params.get("force").map(String::as_str), Some("0"));
    let a = r.audit("update.requested");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].target, id);
    assert!(a[0].actor.starts_with("user:"), "{}", a[0].actor);
    let ev = until("update.requested event", || {
        let e = events.try_recv().ok();
        async move { e.filter(|e| e.kind == "update.requested") }
    })
    .await;
    assert_eq!(ev.data["id"], json!(id));

    // While the updater runs, another bundle is refused and leaves nothing.
    let (f2, sig2) = r.sign("newer", &manifest("1.3.1", 10));
    let (s, v) = r.upload_file(&f2, &sig2, &[]).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (409, Some("update_in_progress")),
        "{v}"
    );
    assert_eq!(r.ready().len(), 2);
    r.no_incoming();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_foreign_keys_and_bad_manifests_are_refused_and_change_nothing() {
    let r = rig(Some(UPDATER_TEMPLATE), |_| {}).await;
    let (f, sig) = r.sign("b", &manifest("2.0.0", 1));
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[100] ^= 1;
    let (s, v, _) = r.upload(&bytes, &sig, &[]).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("bad_signature")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("does not match"),
        "{v}"
    );

    let (s, v, _) = r.upload(&bytes, "not a signature", &[]).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("bad_signature")),
        "{v}"
    );

    let (f, sig) = bundle(
        r.tmp.path(),
        "foreign",
        4096,
        &r.other_secret,
        &manifest("2.0.0", 1),
    );
    let (s, v) = r.upload_file(&f, &sig, &[]).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("wrong_key")), "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("trusts only key"),
        "{v}"
    );

    let (f, sig) = r.sign("unlabelled", "made by hand");
    let (s, v) = r.upload_file(&f, &sig, &[]).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_manifest")), "{v}");

    let (s, v, _) = r.upload(b"x", "", &[("colour", "red")]).await;
    assert_eq!(s, 400, "{v}");

    assert!(r.ready().is_empty(), "{:?}", r.ready());
    r.no_incoming();
    assert_eq!(r.updater().await, None, "no updater spawned");
    assert_eq!(r.audit("update.refused").len(), 4);
    assert!(r.audit("update.requested").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_not_newer_needs_force() {
    let r = rig(Some(UPDATER_TEMPLATE), |_| {}).await;
    for (name, version, serial) in [("same", "1.2.3", 5), ("older", "1.1.0", 99)] {
        let (f, sig) = r.sign(name, &manifest(version, serial));
        let (s, v) = r.upload_file(&f, &sig, &[]).await;
        assert_eq!((s, v["error"].as_str()), (409, Some("not_newer")), "{v}");
        assert!(v["message"].as_str().unwrap().contains("force=true"), "{v}");
    }
    assert!(r.ready().is_empty());
    r.no_incoming();
    let (f, sig) = r.sign("same", &manifest("1.2.3", 5));
    let (s, v) = r.upload_file(&f, &sig, &[("force", "true")]).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["forced"], json!(true));
    let params = r.updater().await.expect("updater@0 spawned");
    assert_eq!(params.get("force").map(String::as_str), Some("1"));
    assert_eq!(params.get("id").map(String::as_str), v["id"].as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_over_the_cap_is_413_and_leaves_no_file() {
    let r = rig(None, |c| c.update_max_bytes = 1000).await;
    let (f, sig) = r.sign("big", &manifest("2.0.0", 1));
    let (s, v) = r.upload_file(&f, &sig, &[]).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("update_max_bytes"),
        "{v}"
    );
    r.no_incoming();
    assert!(r.ready().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_or_an_updater_template_updates_are_unavailable() {
    let r = rig(None, |c| c.update_key = None).await;
    let (f, sig) = r.sign("k", &manifest("2.0.0", 1));
    let (s, v) = r.upload_file(&f, &sig, &[]).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (409, Some("updates_unavailable")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("no update key"),
        "{v}"
    );
    let (s, v) = r
        .srv
        .call(Method::GET, "/api/v1/admin/update", Some(&r.admin), None)
        .await;
    assert_eq!((s, &v["available"]), (200, &json!(false)), "{v}");
    r.no_incoming();

    // A key but a zigral-init without the updater template.
    let r = rig(
        Some("[[service]]\nname = \"idle\"\ncommand = \"/bin/sleep\"\nargs = [\"60\"]\n"),
        |_| {},
    )
    .await;
    let (f, sig) = r.sign("t", &manifest("2.0.0", 1));
    let (s, v) = r.upload_file(&f, &sig, &[]).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (409, Some("updates_unavailable")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("'updater' template"),
        "{v}"
    );
    assert!(r.ready().is_empty(), "{:?}", r.ready());
    r.no_incoming();

    // Nobody but administrators.
    let user = r.srv.user(&r.admin, "mallory").await;
    let (s, _) = r
        .srv
        .call(Method::GET, "/api/v1/admin/update", Some(&user), None)
        .await;
    assert_eq!(s, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_and_the_updaters_status_show_in_the_api() {
    let r = rig(None, |_| {}).await;
    let (s, v) = r.srv.call(Method::GET, "/api/v1/info", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(
        v["release"],
        json!({"version": "1.2.3", "serial": 5, "schema": 4, "git": "cafe"})
    );
    let (s, v) = r
        .srv
        .call(Method::GET, "/api/v1/admin/update", Some(&r.admin), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["available"], json!(true));
    assert_eq!(v["running"]["version"], json!("1.2.3"));
    assert_eq!(v["update"], Value::Null);
    let status = json!({"id": "u1-abcd", "phase": "gate", "message": "waiting for the health gate",
        "version": "1.3.0", "from_version": "1.2.3", "slot": "b", "active_slot": "b",
        "forced": false, "started_ms": 1});
    std::fs::write(r.updates_mk().join("status.json"), status.to_string()).unwrap();
    let (_, v) = r
        .srv
        .call(Method::GET, "/api/v1/admin/update", Some(&r.admin), None)
        .await;
    assert_eq!(v["update"], status);

    // No release file: this build's version, serial 0, the store's schema.
    let r = rig(None, |c| c.release_file = None).await;
    let (_, v) = r.srv.call(Method::GET, "/api/v1/info", None, None).await;
    assert_eq!(v["release"]["version"], json!(env!("CARGO_PKG_VERSION")));
    assert_eq!(v["release"]["serial"], json!(0));
    assert_eq!(v["release"]["schema"], json!(zigral_store::SCHEMA_VERSION));
    assert_eq!(v["release"]["git"], json!("unknown"));
}

impl Rig {
    fn updates_mk(&self) -> PathBuf {
        std::fs::create_dir_all(self.updates()).unwrap();
        self.updates()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_while_the_health_gate_is_on() {
    let r = rig(None, |_| {}).await;
    std::fs::write(r.updates_mk().join("gate"), "").unwrap();
    let resp = r
        .srv
        .req(
            Method::PUT,
            "/api/v1/admin/config/colour",
            Some(&r.admin),
            Some(json!({"colour": "blue"})),
        )
        .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], json!("update_in_progress"));
    assert!(v["message"].as_str().unwrap().contains("retry"), "{v}");
    // A login writes too.
    let (s, _) = r
        .srv
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(s, 503);
    // Reads pass.
    let (s, _) = r.srv.call(Method::GET, "/api/v1/info", None, None).await;
    assert_eq!(s, 200);
    let (s, _) = r
        .srv
        .call(Method::GET, "/api/v1/admin/config", Some(&r.admin), None)
        .await;
    assert_eq!(s, 200);
    let _ws = r.srv.events(&r.admin).await;
    std::fs::remove_file(r.updates().join("gate")).unwrap();
    let (s, v) = r
        .srv
        .call(
            Method::PUT,
            "/api/v1/admin/config/colour",
            Some(&r.admin),
            Some(json!({"colour": "blue"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_updates_folder_takes_a_good_pair_and_refuses_a_bad_one() {
    let r = rig(Some(UPDATER_TEMPLATE), |_| {}).await;
    let dir = r.updates_mk();
    let (f, _) = r.sign("tampered", &manifest("2.0.0", 1));
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[7] ^= 0x40;
    std::fs::write(dir.join("tampered.tar.zst"), bytes).unwrap();
    std::fs::copy(
        r.tmp.path().join("tampered.tar.zst.minisig"),
        dir.join("tampered.tar.zst.minisig"),
    )
    .unwrap();
    // A bundle without its signature is left alone.
    std::fs::write(dir.join("lonely.tar.zst"), b"x").unwrap();
    zigral_control::update::start_watcher(r.srv.state.clone());
    let reason = until("the tampered pair is refused", || {
        let p = dir.join("tampered.refused.txt");
        async move { std::fs::read_to_string(p).ok() }
    })
    .await;
    assert!(reason.contains("does not match"), "{reason}");
    let left = names(&dir);
    for n in [
        "tampered.tar.zst.refused",
        "tampered.tar.zst.minisig.refused",
        "lonely.tar.zst",
    ] {
        assert!(left.contains(&n.to_owned()), "{n} in {left:?}");
    }
    assert!(!left.contains(&"tampered.tar.zst".to_owned()), "{left:?}");
    let refused = r.audit("update.refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].detail["code"], json!("bad_signature"));

    let (f, _) = r.sign("good", &manifest("2.0.0", 1));
    std::fs::copy(&f, dir.join("good.tar.zst")).unwrap();
    std::fs::copy(
        r.tmp.path().join("good.tar.zst.minisig"),
        dir.join("good.tar.zst.minisig"),
    )
    .unwrap();
    let params = until("the updater is spawned", || async { r.updater().await }).await;
    let id = params["id"].clone();
    assert_eq!(params["force"], "0");
    assert_eq!(
        r.ready(),
        vec![format!("{id}.tar.zst"), format!("{id}.tar.zst.minisig")]
    );
    let left = names(&dir);
    assert!(!left.iter().any(|n| n.starts_with("good.")), "{left:?}");
    let a = r.audit("update.requested");
    assert_eq!((a.len(), a[0].actor.as_str()), (1, "system"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_updates_outcome_is_audited_once() {
    let r = rig(None, |_| {}).await;
    let dir = r.updates_mk();
    let status = |id: &str, phase: &str| {
        json!({"id": id, "phase": phase, "message": format!("{id} ended"), "version": "1.3.0",
            "from_version": "1.2.3", "slot": "b", "active_slot": "a", "forced": false,
            "started_ms": 1, "finished_ms": 2})
        .to_string()
    };
    std::fs::write(dir.join("status.json"), status("u1-aaaa", "rolled_back")).unwrap();
    let mut events = r.srv.state.events().subscribe();
    zigral_control::update::start_watcher(r.srv.state.clone());
    until("update.rolled_back audited", || {
        let n = r.audit("update.rolled_back").len();
        async move { (n > 0).then_some(()) }
    })
    .await;
    let ev = until("update.rolled_back event", || {
        let e = events.try_recv().ok();
        async move { e.filter(|e| e.kind == "update.rolled_back") }
    })
    .await;
    assert_eq!(ev.data["message"], json!("u1-aaaa ended"));
    // Seen again on the next tick: not audited twice. A restarted control plane reads the
    // id it audited last from the store.
    tokio::time::sleep(zigral_control::update::watch::EVERY + Duration::from_millis(500)).await;
    assert_eq!(r.audit("update.rolled_back").len(), 1);
    assert_eq!(
        r.srv
            .state
            .store()
            .get_config(zigral_control::update::LAST_AUDITED_KEY)
            .unwrap(),
        Some(json!("u1-aaaa"))
    );
    std::fs::write(dir.join("status.json"), status("u2-bbbb", "committed")).unwrap();
    until("update.committed audited", || {
        let n = r.audit("update.committed").len();
        async move { (n > 0).then_some(()) }
    })
    .await;
    assert_eq!(r.audit("update.rolled_back").len(), 1);
    assert_eq!(r.audit("update.committed").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_left_by_a_killed_updater_is_lifted() {
    let r = rig(Some(UPDATER_TEMPLATE), |_| {}).await;
    let (f, sig) = r.sign("good", &manifest("1.3.0", 9));
    let (s, v) = r.upload_file(&f, &sig, &[]).await;
    assert_eq!(s, 202, "{v}");
    // The running updater (here `sleep 30`) holds the gate.
    let dir = r.updates_mk();
    std::fs::write(dir.join("gate"), "update in progress\n").unwrap();
    zigral_control::update::start_watcher(r.srv.state.clone());
    // A refused pair takes the watcher two rounds (seen, then taken), so once it is refused
    // the stale-gate check has run at least once while the updater was alive.
    std::fs::write(dir.join("junk.tar.zst"), b"not a bundle").unwrap();
    std::fs::write(dir.join("junk.tar.zst.minisig"), b"not a signature").unwrap();
    until("the junk pair is refused", || {
        let p = dir.join("junk.refused.txt");
        async move { p.exists().then_some(()) }
    })
    .await;
    assert!(
        dir.join("gate").exists(),
        "the gate of a running updater stays"
    );

    // The updater is killed before it could lift the gate: the watcher lifts it.
    let socket = r.init.as_ref().unwrap().socket.clone();
    let st = zigral_control::vdi::init::status(&socket).await.unwrap();
    let pid = st
        .group_services("updater@0")
        .find_map(|s| s.pid)
        .expect("the updater's pid");
    let ok = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    until("the stale gate is lifted", || {
        let p = dir.join("gate");
        async move { (!p.exists()).then_some(()) }
    })
    .await;
    let (s, v) = r
        .srv
        .call(
            Method::PUT,
            "/api/v1/admin/config/colour",
            Some(&r.admin),
            Some(json!({"colour": "blue"})),
        )
        .await;
    assert_eq!(s, 200, "writes resume: {v}");
}
