//! Shared helpers for the end-to-end tests and benchmarks: locating the built binaries,
//! picking free ports and X display numbers without races, waiting for readiness, and
//! process guards that kill what a test started (by PID / process group) when dropped.

pub mod api;
pub mod fake_llm;
pub mod haproxy;
pub mod procs;
pub mod stack;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary built in the same profile as the running test
/// (`target/<profile>/<name>`). `make test` builds all binaries before running tests.
pub fn bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("ZIGRAL_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let p = profile_dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `make test` (or `cargo build --release --bins` first)",
        p.display()
    );
    p
}

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The Python with the official MCP SDK: `ZIGRAL_MCP_PYTHON`, else the repo's `.venv` (made by
/// `scripts/setup-python.sh`; panics with that hint when it is missing).
pub fn mcp_python() -> PathBuf {
    if let Ok(p) = std::env::var("ZIGRAL_MCP_PYTHON") {
        return p.into();
    }
    let p = repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run `scripts/setup-python.sh` (or set ZIGRAL_MCP_PYTHON)",
        p.display()
    );
    p
}

/// Runs the MCP client `script` with [`mcp_python`] and `args` and returns what it printed,
/// parsed as JSON; panics with its stdout and stderr when it fails. Blocks: async tests call
/// it from `spawn_blocking`.
pub fn run_mcp_client(script: &Path, args: &[String]) -> serde_json::Value {
    let out = Command::new(mcp_python())
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python client failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client JSON")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// A contiguous range of `n` ports starting at the returned port, all free a moment ago.
/// Below the kernel's ephemeral range (32768+): a stack's private VNC/DevTools ranges (100
/// ports from each base, closed to desktop users by nftables) then never cover a port that a
/// test server got from `bind(0)`, which a desktop's browser must reach.
pub fn free_port_range(n: u16) -> u16 {
    assert!(
        n <= 600,
        "free_port_range: {n} ports is more than the tests need"
    );
    for _ in 0..200 {
        let base = 20000 + (rand_u32() % 12000) as u16;
        if (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free port range of {n}");
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    u32::from_le_bytes(b)
}

/// A claimed X display number (and its claim file, removed on drop). Claims are files under
/// /tmp created with O_EXCL, so parallel tests and test binaries never pick the same number.
#[derive(Debug)]
pub struct DisplayClaim {
    pub n: u32,
    claim: PathBuf,
}

impl Drop for DisplayClaim {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.claim);
    }
}

/// Claims `count` consecutive free display numbers (>= 100), returning the first.
pub fn claim_displays(count: u32) -> DisplayClaim {
    for _ in 0..500 {
        let n = 100 + rand_u32() % 800;
        let free = (n..n + count).all(|d| {
            !Path::new(&format!("/tmp/.X11-unix/X{d}")).exists()
                && !Path::new(&format!("/tmp/.X{d}-lock")).exists()
        });
        if !free {
            continue;
        }
        let claim = PathBuf::from(format!("/tmp/zigral-test-display-{n}.claim"));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&claim)
        {
            Ok(mut f) => {
                let _ = write!(f, "{}", std::process::id());
                return DisplayClaim { n, claim };
            }
            Err(_) => {
                // Stale claim from a dead test process? Take it over.
                let pid: i32 = fs::read_to_string(&claim)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                if pid > 0 && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = fs::remove_file(&claim);
                }
            }
        }
    }
    panic!("no free X display numbers");
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn tcp_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Minimal blocking HTTP/1.1 GET on 127.0.0.1 returning (status, body). Reads Content-Length
/// bytes (Chromium's DevTools server keeps connections open).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(usize::MAX);
            if len != usize::MAX && buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A child process in its own process group, killed (whole group, SIGKILL) on drop.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
}

impl Proc {
    /// Spawns `cmd` in a new process group with stdin closed.
    pub fn spawn(mut cmd: Command) -> Proc {
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::null()).process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
        Proc { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `sig` to the child (not its group).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// Waits up to `timeout` for the child to exit; returns its status.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(-self.pid());
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An Xvfb started by a test on a display it picked itself (`-displayfd`), killed on drop.
#[derive(Debug)]
pub struct Xvfb {
    pub display: u32,
    _proc: Proc,
}

impl Xvfb {
    /// Starts `Xvfb` at `w`x`h`x24 (`-noreset`) and waits until it accepts connections.
    pub fn start(w: u32, h: u32) -> Xvfb {
        Self::start_with(w, h, &["-noreset"])
    }

    /// Starts `Xvfb` at `w`x`h`x24 with extra arguments (`-extension XTEST` to leave one
    /// out, `-auth FILE` to require a cookie, ...) and waits until it accepts connections.
    pub fn start_with(w: u32, h: u32, args: &[&str]) -> Xvfb {
        let (mut rd, wr) = std::io::pipe().expect("pipe");
        let mut cmd = Command::new("Xvfb");
        use std::os::fd::AsRawFd;
        let fd = wr.as_raw_fd();
        cmd.args([
            "-displayfd",
            &fd.to_string(),
            "-screen",
            "0",
            &format!("{w}x{h}x24"),
            "-nolisten",
            "tcp",
        ])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // The write end must survive exec in the child: clear CLOEXEC there.
        // SAFETY: pre_exec runs in the forked child before exec; fcntl is async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let p = Proc::spawn(cmd);
        drop(wr);
        let mut s = String::new();
        rd.read_to_string(&mut s).ok();
        let display: u32 = s.trim().parse().unwrap_or_else(|_| {
            panic!("Xvfb did not report a display (got {s:?}); is xvfb installed?")
        });
        Xvfb { display, _proc: p }
    }
}
