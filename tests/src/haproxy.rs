//! The fleet's real HAProxy on loopback for tests and benchmarks: `deploy/haproxy/haproxy.cfg`
//! plus a backends file written by `deploy/haproxy/gen-backends.sh static`, its runtime API,
//! and the servers' state as HAProxy sees it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Proc, free_port, http_get, repo_root, wait_for};

/// One appliance line of `gen-backends.sh static`.
pub struct Appliance<'a> {
    pub name: &'a str,
    pub control: u16,
    pub viewer: u16,
    pub agent: u16,
}

/// A running HAProxy with the fleet configuration (stopped on drop).
pub struct Haproxy {
    /// The fleet address's port (`ZIGRAL_FLEET_BIND`).
    pub port: u16,
    /// The stats/health port (`/healthz`).
    pub stats: u16,
    /// The runtime API socket.
    pub sock: PathBuf,
    _proc: Proc,
}

/// `haproxy` from PATH or the Debian locations; panics with how to install it.
pub fn binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
        .expect("haproxy not found (PATH, /usr/sbin, /sbin): scripts/install-deps.sh installs it")
}

/// The backends file for `list`, from the committed generator.
pub fn backends(list: &[Appliance<'_>]) -> String {
    let lines: String = list
        .iter()
        .map(|a| {
            format!(
                "{} 127.0.0.1 {} {} {}\n",
                a.name, a.control, a.viewer, a.agent
            )
        })
        .collect();
    let mut child = Command::new("bash")
        .arg(repo_root().join("deploy/haproxy/gen-backends.sh"))
        .arg("static")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gen-backends.sh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("write the appliance list");
    let out = child.wait_with_output().expect("gen-backends.sh");
    assert!(out.status.success(), "gen-backends.sh static failed");
    String::from_utf8(out.stdout).expect("UTF-8 backends")
}

impl Haproxy {
    /// Starts HAProxy in `dir` (its log: `dir/haproxy.log`) with `backends`, once its health
    /// port and runtime API answer.
    pub fn start(dir: &Path, backends: &str) -> Haproxy {
        let file = dir.join("backends.cfg");
        std::fs::write(&file, backends).expect("write backends");
        let (port, stats) = (free_port(), free_port());
        let sock = dir.join("admin.sock");
        let log = std::fs::File::create(dir.join("haproxy.log")).expect("haproxy log");
        let mut cmd = Command::new(binary());
        cmd.arg("-f")
            .arg(repo_root().join("deploy/haproxy/haproxy.cfg"))
            .arg("-f")
            .arg(&file)
            .env("ZIGRAL_FLEET_BIND", format!("127.0.0.1:{port}"))
            .env("ZIGRAL_HAPROXY_STATS", format!("127.0.0.1:{stats}"))
            .env("ZIGRAL_HAPROXY_SOCKET", &sock)
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let proc = Proc::spawn(cmd);
        wait_for(Duration::from_secs(10), "HAProxy's /healthz", || {
            http_get(stats, "/healthz").ok().filter(|(s, _)| *s == 200)
        });
        wait_for(Duration::from_secs(10), "the runtime API socket", || {
            UnixStream::connect(&sock).ok()
        });
        Haproxy {
            port,
            stats,
            sock,
            _proc: proc,
        }
    }

    /// One runtime API command's answer.
    pub fn runtime(&self, cmd: &str) -> String {
        let mut s = UnixStream::connect(&self.sock).expect("runtime API");
        writeln!(s, "{cmd}").expect("runtime API write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("runtime API read");
        out
    }

    /// `(operational state, admin state)` of `backend/server` from `show servers state`:
    /// operational 2 = up, 0 = down; admin bit 0x08 = drain, 0x01/0x02 = maintenance.
    pub fn server_state(&self, backend: &str, server: &str) -> Option<(u32, u32)> {
        self.runtime(&format!("show servers state {backend}"))
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.get(3) == Some(&server))
            .and_then(|f| Some((f.get(5)?.parse().ok()?, f.get(6)?.parse().ok()?)))
    }
}
