//! A host-mode stack (config/host.toml under zigral-init, as root) for whole-stack tests and
//! benchmarks of the desktops the control plane owns: start it with settings, call the API,
//! read zigral-init's status.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::{http, json_ok, login_as};
use crate::{
    DisplayClaim, Proc, bin, claim_displays, free_port, free_port_range, repo_root, wait_for,
};

/// The administrator password every stack starts with.
pub const ADMIN_PW: &str = "desktops-test-admin-pw";

/// A running host-mode stack with room for `slots` desktops (stopped on drop).
pub struct Stack {
    pub init: Proc,
    pub state: PathBuf,
    pub display_base: u32,
    pub vnc_base: u16,
    pub cdp_base: u16,
    pub proxy: u16,
    pub control: u16,
    _claim: DisplayClaim,
}

impl Stack {
    /// Starts a stack whose state dir is `<tmp>/desktops-<tag>-<pid>` (`tmp`: the caller's
    /// `CARGO_TARGET_TMPDIR`); `env` sets `ZIGRAL_*` settings of the services.
    pub fn start(tmp: &Path, tag: &str, slots: u16, env: &[(&str, &str)]) -> Stack {
        Stack::start_at(tmp, tag, slots, env, free_port(), free_port())
    }

    /// [`Stack::start`] with the proxy and the control plane on the given ports (a fleet test
    /// names an appliance's ports before it exists).
    pub fn start_at(
        tmp: &Path,
        tag: &str,
        slots: u16,
        env: &[(&str, &str)],
        proxy: u16,
        control: u16,
    ) -> Stack {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root: desktops run as their own Unix users"
        );
        let claim = claim_displays(u32::from(slots));
        let (vnc_base, cdp_base) = (free_port_range(slots), free_port_range(slots));
        let state = tmp.join(format!("desktops-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let log = std::fs::File::create(state.with_extension("log")).expect("stack log file");
        let mut cmd = Command::new(bin("zigral-init"));
        cmd.arg("run")
            .arg("--config")
            .arg(repo_root().join("config/host.toml"))
            .arg("--state-dir")
            .arg(&state)
            .env("ZIGRAL_DISPLAY_BASE", claim.n.to_string())
            .env("ZIGRAL_VNC_BASE", vnc_base.to_string())
            .env("ZIGRAL_CDP_BASE", cdp_base.to_string())
            .env("ZIGRAL_PROXY_PORT", proxy.to_string())
            .env("ZIGRAL_CONTROL_PORT", control.to_string())
            .env("ZIGRAL_UI_DIR", repo_root().join("ui/dist"))
            .env("ZIGRAL_ADMIN_PASSWORD", ADMIN_PW)
            .env("ZIGRAL_MAX_DESKTOPS", slots.to_string())
            .stdout(log.try_clone().expect("stack log file"))
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let init = Proc::spawn(cmd);
        let st = Stack {
            init,
            display_base: claim.n,
            state,
            vnc_base,
            cdp_base,
            proxy,
            control,
            _claim: claim,
        };
        wait_for(Duration::from_secs(120), "control plane ready", || {
            matches!(http(control, "GET", "/readyz", None, None), Ok((200, _))).then_some(())
        });
        st
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(self.state.with_extension("log")).unwrap_or_default()
    }

    pub fn api(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let (s, text) = http(self.control, method, path, Some(token), body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        (s, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn ok(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        json_ok(self.control, method, path, Some(token), body.as_ref())
    }

    pub fn init_status(&self) -> Value {
        let mut s = UnixStream::connect(self.state.join("init.sock")).expect("init.sock");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("socket timeout");
        s.write_all(b"{\"cmd\":\"status\"}\n")
            .expect("status request");
        let mut line = String::new();
        BufReader::new(s)
            .read_line(&mut line)
            .expect("status reply");
        serde_json::from_str::<Value>(&line).expect("status JSON")["result"].clone()
    }

    /// Creates a user and logs in as them.
    pub fn user(&self, admin: &str, name: &str) -> (String, String) {
        let v = self.ok(
            "POST",
            "/api/v1/users",
            admin,
            Some(json!({"username": name, "password": format!("{name}-password")})),
        );
        let id = v["id"].as_str().expect("user id").to_owned();
        (
            id,
            login_as(self.control, name, &format!("{name}-password")),
        )
    }

    /// Creates a session; returns (id, desktop, seconds it took).
    pub fn session(&self, token: &str) -> (String, u32, f64) {
        let t0 = Instant::now();
        let v = self.ok(
            "POST",
            "/api/v1/sessions",
            token,
            Some(json!({"title": "t"})),
        );
        let secs = t0.elapsed().as_secs_f64();
        (
            v["id"].as_str().expect("session id").to_owned(),
            v["desktop"].as_u64().expect("session desktop") as u32,
            secs,
        )
    }

    pub fn actions(&self, token: &str, session: &str, actions: Value) -> Value {
        let r = self.ok(
            "POST",
            &format!("/api/v1/sessions/{session}/actions"),
            token,
            Some(json!({ "actions": actions })),
        );
        assert_eq!(r["ok"], true, "{r}");
        r
    }

    pub fn page_text(&self, token: &str, session: &str) -> String {
        let r = self.actions(token, session, json!([{"action": "page_text"}]));
        r.to_string()
    }

    /// Desktops as the admin sees them, once `want` holds (e.g. the pool refilled).
    pub fn desktops_when(
        &self,
        admin: &str,
        what: &str,
        want: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        wait_for(Duration::from_secs(90), what, || {
            let v = self.ok("GET", "/api/v1/desktops", admin, None);
            let list = v.as_array()?.clone();
            want(&list).then_some(list)
        })
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.init.signal(nix::sys::signal::Signal::SIGTERM);
        if self.init.wait_timeout(Duration::from_secs(60)).is_none() {
            eprintln!("zigral-init did not stop:\n{}", self.output());
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.state);
            let _ = std::fs::remove_file(self.state.with_extension("log"));
        } else {
            eprintln!("--- stack output ---\n{}", self.output());
        }
    }
}

/// Warm-pool desktops that are ready, by number.
pub fn pooled_ready(list: &[Value]) -> Vec<u32> {
    list.iter()
        .filter(|d| d["owner"].is_null() && d["state"] == "ready")
        .map(|d| d["n"].as_u64().unwrap_or(u64::MAX) as u32)
        .collect()
}
