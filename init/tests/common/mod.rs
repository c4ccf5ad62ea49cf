//! Shared helpers for zigral-init's integration tests: start the real binary on a config,
//! talk to its control socket, wait for service states, find our processes, and a minimal
//! Chrome DevTools client (one request over the browser's websocket).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zigral_tests::Proc;

pub const BIN: &str = env!("CARGO_BIN_EXE_zigral-init");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the target dir (not /tmp: the PID 1 test mounts its own /tmp).
pub fn scratch(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "init-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A running `zigral-init run` whose output goes to `<dir>/out.log`. Dropping it sends
/// SIGTERM (ordered stop of its services) and SIGKILL if it is still there after 30 s.
pub struct Init {
    pub proc: Option<Proc>,
    pub dir: PathBuf,
    pub state: PathBuf,
    pub out: PathBuf,
}

impl Init {
    pub fn start(dir: &Path, config: &Path, extra: &[&str]) -> Init {
        let state = dir.join("state");
        let out = dir.join("out.log");
        let f = std::fs::File::create(&out).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(&state)
            .args(extra)
            .env_remove("ZIGRAL_DISPLAY_BASE")
            .env_remove("ZIGRAL_VNC_BASE")
            .env_remove("ZIGRAL_CDP_BASE")
            .env_remove("ZIGRAL_PROXY_PORT")
            .env_remove("ZIGRAL_CONTROL_PORT")
            .env_remove("ZIGRAL_ADMIN_PASSWORD")
            // These tests spawn and destroy desktops themselves: host.toml's control plane
            // (which inherits this environment) must not manage them (reconcile, warm pool).
            .env("ZIGRAL_DESKTOP_MODE", "static")
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        let proc = Proc::spawn(cmd);
        let init = Init {
            proc: Some(proc),
            dir: dir.to_path_buf(),
            state: state.clone(),
            out,
        };
        let sock = state.join("init.sock");
        let t0 = Instant::now();
        while !sock.exists() {
            if t0.elapsed() > Duration::from_secs(30) {
                panic!("no control socket; output:\n{}", init.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        init
    }

    /// Writes `toml` to `<dir>/services.toml` and starts on it.
    pub fn with_config(dir: &Path, toml: &str) -> Init {
        let cfg = dir.join("services.toml");
        std::fs::write(&cfg, toml).unwrap();
        Init::start(dir, &cfg, &[])
    }

    pub fn pid(&self) -> i32 {
        self.proc.as_ref().map(|p| p.pid()).unwrap_or(0)
    }

    pub fn socket(&self) -> PathBuf {
        self.state.join("init.sock")
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn call(&self, req: Value) -> Result<Value, String> {
        zigral_init::control::call(&self.socket(), &req, Duration::from_secs(60))
            .map_err(|e| e.to_string())
    }

    pub fn status(&self) -> Value {
        self.call(json!({"cmd":"status"})).expect("status")
    }

    pub fn service(&self, name: &str) -> Value {
        self.status()["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Waits until `name` is in one of `states`; returns its status entry.
    pub fn wait_state(&self, name: &str, states: &[&str], timeout: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let s = self.service(name);
            if states.iter().any(|st| s["state"] == *st) {
                return s;
            }
            if t0.elapsed() > timeout {
                panic!(
                    "{name} not in {states:?} after {timeout:?}: {s}\nstatus: {}\noutput:\n{}",
                    self.status(),
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Stops it (SIGTERM, ordered) but keeps its directory, for a restart on the same state.
    pub fn stop_keeping_state(mut self, timeout: Duration) {
        self.terminate(timeout);
        self.dir = PathBuf::new();
    }

    /// Sends SIGTERM and waits for exit; returns the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let mut p = self.proc.take()?;
        p.signal(nix::sys::signal::Signal::SIGTERM);
        let st = p.wait_timeout(timeout);
        if st.is_none() {
            self.proc = Some(p);
            panic!(
                "zigral-init did not exit within {timeout:?}:\n{}",
                self.output()
            );
        }
        st.and_then(|s| s.code())
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal(nix::sys::signal::Signal::SIGTERM);
            p.wait_timeout(Duration::from_secs(30));
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// PIDs whose parent is `ppid`.
pub fn children_of(ppid: i32) -> Vec<i32> {
    zigral_init::supervisor::children_of(ppid)
}

/// (state char, ppid) of `pid`.
pub fn stat(pid: i32) -> Option<(char, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    let mut f = after.split_whitespace();
    let st = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((st, ppid))
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    matches!(stat(pid), Some((s, _)) if s != 'Z')
}

/// All PIDs whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

pub fn repo_config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("config")
        .join(name)
}

fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Sends one DevTools command to the browser target of the Chrome whose DevTools listen on
/// 127.0.0.1:`port` (a minimal RFC 6455 client: one masked text frame out, text frames in)
/// and returns its `result`, or the error object as `Err`.
pub fn cdp(port: u16, method: &str, params: Value) -> Result<Value, String> {
    use std::io::{Read, Write};
    let (code, body) =
        zigral_tests::http_get(port, "/json/version").map_err(|e| format!("json/version: {e}"))?;
    if code != 200 {
        return Err(format!("json/version: HTTP {code}"));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let url = v["webSocketDebuggerUrl"]
        .as_str()
        .ok_or("no webSocketDebuggerUrl")?;
    let path = url
        .split_once("://")
        .and_then(|(_, r)| r.split_once('/'))
        .map(|(_, p)| format!("/{p}"))
        .ok_or("bad websocket URL")?;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut key = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        base64(&key)
    )
    .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b)
            .map_err(|e| format!("handshake: {e}"))?;
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!("websocket handshake refused: {head}"));
    }
    let msg = json!({"id": 1, "method": method, "params": params}).to_string();
    let payload = msg.as_bytes();
    let mut frame = vec![0x81u8];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n < 65536 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x5a, 0x17, 0xc3, 0x9e];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, c)| c ^ mask[i % 4]));
    s.write_all(&frame).map_err(|e| e.to_string())?;
    let mut message = Vec::new();
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h)
            .map_err(|e| format!("reading a frame: {e}"))?;
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).map_err(|e| e.to_string())?;
            len = u64::from(u16::from_be_bytes(l));
        } else if len == 127 {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).map_err(|e| e.to_string())?;
            len = u64::from_be_bytes(l);
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data).map_err(|e| e.to_string())?;
        let opcode = h[0] & 0x0f;
        if opcode == 0x8 {
            return Err("websocket closed".into());
        }
        if opcode == 0x9 || opcode == 0xa {
            continue; // ping/pong: nothing to answer for one short request
        }
        message.extend_from_slice(&data);
        if h[0] & 0x80 == 0 {
            continue; // more fragments follow
        }
        let v: Value = serde_json::from_slice(&message).map_err(|e| e.to_string())?;
        message.clear();
        if v["id"] == 1 {
            return match v.get("error") {
                Some(e) => Err(e.to_string()),
                None => Ok(v["result"].clone()),
            };
        }
    }
}

/// Names of the cookies Chrome on DevTools port `port` holds (`Storage.getCookies`).
pub fn cookie_names(port: u16) -> Vec<String> {
    let r = cdp(port, "Storage.getCookies", json!({})).expect("Storage.getCookies");
    let mut names: Vec<String> = r["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}
