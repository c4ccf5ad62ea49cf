//! The fleet deployment files of issue 17 (`deploy/`), checked offline.
//!
//! - `deploy/check.sh` accepts the committed tree: KubeVirt objects against the vendored
//!   schemas, core Kubernetes objects with kubernetes-validate --strict, the Nomad jobs parsed,
//!   `haproxy -c` on every HAProxy configuration.
//! - It rejects copies of the tree with one deliberate mistake each (a misspelt KubeVirt field,
//!   a misspelt HAProxy keyword, broken HCL, ...), naming the file and the mistake, and it
//!   fails with a clear message when a tool is missing.
//! - The HAProxy configuration routes as the fleet needs, run for real on loopback in front of
//!   three stand-in appliances (one of them down): `/a/<name>/...` reaches appliance <name>
//!   (control port, or viewer port for the noVNC WebSocket, which really upgrades), with the
//!   prefix stripped; an unknown or down appliance answers 503 JSON and never lands on another
//!   one; new work goes to a ready appliance and not to one drained through the runtime API or
//!   by its capacity agent.
//!
//! Needs haproxy (Debian package) and the repo's .venv (`scripts/setup-python.sh`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use zigral_tests::haproxy::{Appliance, Haproxy, backends};
use zigral_tests::{free_port, http_get, repo_root, wait_for};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "zigral-deploy-{tag}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

fn check_sh(dir: Option<&Path>, venv: Option<&str>) -> Output {
    let mut cmd = Command::new(repo_root().join("deploy/check.sh"));
    if let Some(d) = dir {
        cmd.arg(d);
    }
    if let Some(v) = venv {
        cmd.env("ZIGRAL_VENV", v);
    }
    cmd.output().expect("run deploy/check.sh")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn committed_deploy_files_pass_every_offline_check() {
    let o = check_sh(None, None);
    let out = text(&o);
    assert!(o.status.success(), "deploy/check.sh failed:\n{out}");
    // Every kind of check ran, on every kind of file.
    for what in [
        "kubevirt kubevirt/pool.yaml: VirtualMachinePool zigral",
        "kubevirt kubevirt/pool-datavolume.yaml: VirtualMachinePool zigral",
        "kubevirt kubevirt/datavolume-golden.yaml: DataVolume",
        "k8s kubevirt/services.yaml: Service zigral-vms (kubernetes-validate --strict",
        "k8s kubevirt/haproxy.yaml: Deployment zigral-haproxy (kubernetes-validate --strict",
        "nomad nomad/zigral.nomad.hcl: parses as HCL2",
        "nomad nomad/zigral.nomad.hcl: qemu task, ports http/viewer/agent, http check on /readyz",
        "nomad nomad/haproxy.nomad.hcl: template local/backends.cfg with a sample appliance (haproxy -c)",
        "haproxy haproxy/haproxy.cfg + haproxy/backends.k8s.cfg (haproxy -c)",
        "haproxy haproxy/haproxy.cfg + haproxy/backends.static.cfg (haproxy -c)",
        "haproxy haproxy/backends.k8s.cfg: in sync with gen-backends.sh",
    ] {
        assert!(
            out.contains(&format!("ok    {what}")),
            "no passing check '{what}' in:\n{out}"
        );
    }
    assert!(out.contains(" passed, 0 failed"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn a_mistake_in_any_file_is_rejected_with_its_place() {
    // (file under deploy/, text replaced, replacement, what the report must say)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "kubevirt/pool.yaml",
            "runStrategy: Always",
            "runStratgy: Always",
            "'runStratgy' was unexpected",
        ),
        (
            "kubevirt/pool-datavolume.yaml",
            "              pvc:\n",
            "              pvcc:\n",
            "'pvcc' was unexpected",
        ),
        (
            "kubevirt/services.yaml",
            "clusterIP: None",
            "clusterIp: None",
            "'clusterIp' was unexpected",
        ),
        (
            "kubevirt/haproxy.yaml",
            "kind: Deployment",
            "kind: Deploymnt",
            "Couldn't find schema for kind Deploymnt",
        ),
        (
            "kubevirt/pool.yaml",
            "path: /readyz",
            "path: /ready",
            "readinessProbe must be httpGet /readyz on port 8000",
        ),
        (
            "haproxy/haproxy.cfg",
            "timeout tunnel 8h",
            "timeout tunel 8h",
            "(got 'tunel')",
        ),
        (
            "haproxy/backends.static.cfg",
            "default-server check inter 5s fall 3 rise 2 weight 0",
            "default-server check inter 5s fall 3 rise 2 weight 1",
            "weight must be 0",
        ),
        (
            "nomad/zigral.nomad.hcl",
            "      resources {",
            "      resources {{",
            "FAIL  nomad nomad/zigral.nomad.hcl: parses as HCL2",
        ),
        (
            "nomad/zigral.nomad.hcl",
            "path     = \"/readyz\"",
            "path     = \"/ready\"",
            "no service on port http with an http check on /readyz",
        ),
        (
            "nomad/haproxy.nomad.hcl",
            "balance leastconn",
            "balance leastcon",
            "template local/backends.cfg with a sample appliance (haproxy -c)",
        ),
    ];
    for (file, from, to, expect) in cases {
        let tmp = TempDir::new("mut");
        let tree = tmp.0.join("deploy");
        copy_tree(&repo_root().join("deploy"), &tree);
        let path = tree.join(file);
        let orig = fs::read_to_string(&path).unwrap();
        assert!(orig.contains(from), "{file} no longer contains {from:?}");
        fs::write(&path, orig.replacen(from, to, 1)).unwrap();
        let o = check_sh(Some(&tree), None);
        let out = text(&o);
        assert_eq!(
            o.status.code(),
            Some(1),
            "check.sh accepted {file} with {to:?}:\n{out}"
        );
        assert!(
            out.contains(expect),
            "{file} with {to:?}: report lacks {expect:?}:\n{out}"
        );
        assert!(
            out.lines()
                .filter(|l| l.starts_with("FAIL"))
                .any(|l| l.contains(file)),
            "{file}: no FAIL line names the file:\n{out}"
        );
    }
}

#[test]
fn a_missing_tool_or_tree_is_a_clear_failure() {
    let o = check_sh(None, Some("/nonexistent-venv"));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains("/nonexistent-venv/bin/python") && out.contains("scripts/setup-python.sh"),
        "{out}"
    );
    let tmp = TempDir::new("empty");
    let o = check_sh(Some(&tmp.0), None);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("not a deploy/ tree"), "{out}");
}

// ------------------------------------------------------------------------------ live routing

/// A stand-in appliance port: answers every HTTP request with who it is and what it got, and
/// a WebSocket upgrade with 101, then echoes bytes prefixed with its name.
fn serve_http(name: &'static str, kind: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || handle(s, name, kind));
        }
    });
    port
}

fn handle(s: TcpStream, name: &str, kind: &str) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return; // a health check that closed early
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_owned());
    }
    let target = head[0].split_whitespace().nth(1).unwrap_or("").to_owned();
    let header = |k: &str| {
        head.iter()
            .find_map(|l| {
                let (a, b) = l.split_once(':')?;
                a.eq_ignore_ascii_case(k).then(|| b.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let mut w = s;
    if header("upgrade").eq_ignore_ascii_case("websocket") {
        // RFC 6455's sample key/accept pair (the client below sends that key).
        let _ = write!(
            w,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Appliance: {name}/{kind}{target}\r\n\r\n"
        );
        let mut buf = [0u8; 256];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 || w.write_all(format!("{name}:").as_bytes()).is_err() {
                return;
            }
            let _ = w.write_all(&buf[..n]);
        }
        return;
    }
    let body = serde_json::json!({
        "appliance": name, "port": kind, "target": target,
        "prefix": header("x-forwarded-prefix"), "forwarded_for": header("x-forwarded-for"),
    })
    .to_string();
    let _ = write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A stand-in capacity agent (HAProxy agent-check): one line per connection.
fn serve_agent(drain: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let line = if drain.load(Ordering::SeqCst) {
                "drain\n"
            } else {
                "up 100%\n"
            };
            let _ = s.write_all(line.as_bytes());
        }
    });
    port
}

fn get(port: u16, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http_get(port, path).unwrap();
    let v = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (status, v)
}

/// Whether HAProxy has `server` of be_pool in drain (admin state bit 0x08: set through the
/// runtime API or by the agent).
fn drained(h: &Haproxy, server: &str) -> bool {
    h.server_state("be_pool", server)
        .is_some_and(|(_, admin)| admin & 0x08 != 0)
}

#[test]
fn haproxy_config_pins_each_request_to_its_appliance() {
    let tmp = TempDir::new("route");

    // zigral-0 and zigral-1 are up (zigral-1 with a capacity agent); zigral-2 is down.
    let agent1_drain = Arc::new(AtomicBool::new(false));
    let list = [
        Appliance {
            name: "zigral-0",
            control: serve_http("zigral-0", "control"),
            viewer: serve_http("zigral-0", "viewer"),
            agent: free_port(), // no agent: HAProxy must carry on without one
        },
        Appliance {
            name: "zigral-1",
            control: serve_http("zigral-1", "control"),
            viewer: serve_http("zigral-1", "viewer"),
            agent: serve_agent(agent1_drain.clone()),
        },
        Appliance {
            name: "zigral-2",
            control: free_port(),
            viewer: free_port(),
            agent: free_port(),
        },
    ];
    let h = Haproxy::start(&tmp.0, &backends(&list));
    let fleet = h.port;

    // /a/<name>/...: that appliance's control plane, prefix stripped, query kept.
    for name in ["zigral-0", "zigral-1"] {
        let (st, v) = get(fleet, &format!("/a/{name}/api/v1/sessions?x=1"));
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["appliance"], name, "{v}");
        assert_eq!(v["port"], "control", "{v}");
        assert_eq!(v["target"], "/api/v1/sessions?x=1", "{v}");
        assert_eq!(v["prefix"], format!("/a/{name}"), "{v}");
        assert_eq!(v["forwarded_for"], "127.0.0.1", "{v}");
        // ... and its viewer proxy for the noVNC WebSocket, which really upgrades.
        let mut ws = TcpStream::connect(("127.0.0.1", fleet)).unwrap();
        ws.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            ws,
            "GET /a/{name}/websockify?token=t0k&desktop=0 HTTP/1.1\r\nHost: fleet\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut r = BufReader::new(ws.try_clone().unwrap());
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            assert!(r.read_line(&mut head).unwrap() > 0, "closed: {head}");
        }
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // (HAProxy passes header names in lower case.)
        assert!(
            head.to_ascii_lowercase().contains(&format!(
                "x-appliance: {name}/viewer/websockify?token=t0k&desktop=0"
            )),
            "{head}"
        );
        ws.write_all(b"frame").unwrap();
        let want = format!("{name}:frame");
        let mut got = vec![0u8; want.len()];
        r.read_exact(&mut got).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), want);
    }
    let (st, _) = get(fleet, "/a/zigral-1");
    assert_eq!(st, 308, "/a/<name> redirects to /a/<name>/");

    // Unknown or down appliance: a clear 503, never another appliance.
    for (path, name) in [
        ("/a/zigral-9/api/v1/sessions", "zigral-9"),
        ("/a/zigral-2/api/v1/sessions", "zigral-2"),
        ("/a/zigral-2/websockify?token=t", "zigral-2"),
    ] {
        let (st, v) = get(fleet, path);
        assert_eq!(st, 503, "{path}: {v}");
        assert_eq!(v["error"], "appliance_unavailable", "{path}: {v}");
        assert_eq!(v["appliance"], name, "{path}: {v}");
    }
    let (st, v) = get(fleet, "/a/Not_A_Name/x");
    assert_eq!(
        (st, &v["error"]),
        (400, &"bad_appliance_name".into()),
        "{v}"
    );

    // New work (no prefix) goes to the appliances that are up, the down one never answers.
    let seen = |n: usize| {
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..n {
            let (st, v) = get(fleet, "/api/v1/auth/login");
            assert_eq!(st, 200, "{v}");
            assert_eq!(
                v["prefix"], "",
                "no prefix header on unprefixed requests: {v}"
            );
            names.insert(v["appliance"].as_str().unwrap().to_owned());
        }
        names
    };
    let all: Vec<_> = seen(10).into_iter().collect();
    assert_eq!(all, ["zigral-0", "zigral-1"]);

    // Drained through the runtime API: no new work for zigral-0, its sessions go on.
    let out = h.runtime("set server be_pool/zigral-0 state drain");
    assert!(out.trim().is_empty(), "runtime API: {out}");
    assert!(drained(&h, "zigral-0"));
    assert_eq!(seen(6).into_iter().collect::<Vec<_>>(), ["zigral-1"]);
    assert_eq!(get(fleet, "/a/zigral-0/x").1["appliance"], "zigral-0");
    h.runtime("set server be_pool/zigral-0 state ready");

    // Drained by its own capacity agent ("drain" on the agent port): same for zigral-1.
    agent1_drain.store(true, Ordering::SeqCst);
    wait_for(
        Duration::from_secs(20),
        "HAProxy's agent-check to drain zigral-1",
        || drained(&h, "zigral-1").then_some(()),
    );
    assert_eq!(seen(6).into_iter().collect::<Vec<_>>(), ["zigral-0"]);
    assert_eq!(get(fleet, "/a/zigral-1/x").1["appliance"], "zigral-1");
}
