//! Benchmark of `zigral proxy` against Debian's `websockify` and a `socat` relay, all proxying
//! to the same local TCP targets in the same run: server→client throughput, proxy CPU seconds
//! per GB, 10-byte round trip p50/p99, idle RSS, memory per idle connection (1, 1000, 10,000;
//! RSS and PSS, websockify's measured at 100 connections, one forked process each) and
//! connection set-up time. Prints `name: value` lines with ratios.
//!
//! Needs the release `zigral` binary (`cargo build --release -p zigral`), `websockify` and
//! `socat`. `ZIGRAL_BENCH_CONNS=1,1000` limits the connection stages (default 1,1000,10000),
//! `ZIGRAL_BENCH_WSFY_CONNS` sets websockify's (default 100), `ZIGRAL_BENCH_ONLY=memory` (or
//! `throughput`, `rtt`, `setup`, comma-separated) runs only those parts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zigral_tests::{Proc, free_port, tcp_open, wait_for};

const ROUNDS: usize = 3;
const THROUGHPUT_SECS: f64 = 3.0;
const RTT_ITERS: usize = 3000;
const SETUP_ITERS: usize = 150;

fn main() {
    if std::env::var("ZIGRAL_BENCH_ROLE").as_deref() == Ok("echo") {
        return echo_process();
    }
    raise_nofile(65536);
    let zigral = zigral_tests::bin("zigral");
    let targets = Targets::start();
    println!("# zigral proxy bench: {}", zigral.display());
    println!("# peers: websockify (Debian), socat -b 65536 fork relay; direct = no proxy");

    let names = ["zigral", "websockify", "socat", "direct"];
    let only = std::env::var("ZIGRAL_BENCH_ONLY").unwrap_or_default();
    let want = |s: &str| only.is_empty() || only.split(',').any(|o| o == s);
    if want("throughput") {
        // ---- throughput + CPU per GB, interleaved rounds ----
        let mut tp: [Vec<f64>; 4] = Default::default();
        let mut cpu: [Vec<f64>; 3] = Default::default();
        for _ in 0..ROUNDS {
            for (i, kind) in [Kind::Zigral, Kind::Websockify, Kind::Socat, Kind::Direct]
                .into_iter()
                .enumerate()
            {
                let p = Peer::start(kind, &zigral, targets.blast);
                let (mbps, cpu_s_per_gb) = p.throughput();
                tp[i].push(mbps);
                if i < 3 {
                    cpu[i].push(cpu_s_per_gb);
                }
            }
        }
        for (i, n) in names.iter().enumerate() {
            println!("throughput_s2c_mb_per_s_{n}: {:.0}", median(&mut tp[i]));
        }
        let tz = median(&mut tp[0]);
        println!(
            "throughput_s2c_vs_websockify: {:.2}x (goal >= 2x)",
            tz / median(&mut tp[1])
        );
        println!(
            "throughput_s2c_vs_socat: {:.2}x (goal >= 1.0x)",
            tz / median(&mut tp[2])
        );
        println!("throughput_s2c_vs_direct: {:.2}x", tz / median(&mut tp[3]));
        for (i, n) in names.iter().take(3).enumerate() {
            println!("proxy_cpu_s_per_gb_{n}: {:.3}", median(&mut cpu[i]));
        }
        let cz = median(&mut cpu[0]);
        println!(
            "proxy_cpu_per_gb_vs_websockify: {:.2}x (lower is better)",
            cz / median(&mut cpu[1])
        );
        println!(
            "proxy_cpu_per_gb_vs_socat: {:.2}x (lower is better)",
            cz / median(&mut cpu[2])
        );
    }
    if want("rtt") {
        // ---- 10-byte round trips ----
        let mut p50: [Vec<f64>; 4] = Default::default();
        let mut p99: [Vec<f64>; 4] = Default::default();
        for _ in 0..ROUNDS {
            for (i, kind) in [Kind::Zigral, Kind::Websockify, Kind::Socat, Kind::Direct]
                .into_iter()
                .enumerate()
            {
                let p = Peer::start(kind, &zigral, targets.echo);
                let (a, b) = p.rtt();
                p50[i].push(a);
                p99[i].push(b);
            }
        }
        for (i, n) in names.iter().enumerate() {
            println!("rtt_10b_p50_us_{n}: {:.1}", median(&mut p50[i]));
            println!("rtt_10b_p99_us_{n}: {:.1}", median(&mut p99[i]));
        }
        let rz = median(&mut p50[0]);
        println!(
            "rtt_p50_vs_socat: {:.2}x (goal <= 1.2x)",
            rz / median(&mut p50[2])
        );
        println!("rtt_p50_vs_websockify: {:.2}x", rz / median(&mut p50[1]));
    }
    if want("setup") {
        // ---- connection set-up ----
        let mut setup: [f64; 3] = [0.0; 3];
        for (i, kind) in [Kind::Zigral, Kind::Websockify, Kind::Socat]
            .into_iter()
            .enumerate()
        {
            let p = Peer::start(kind, &zigral, targets.greet);
            setup[i] = p.setup_ms();
        }
        println!("connect_setup_ms_p50_zigral: {:.3}", setup[0]);
        println!("connect_setup_ms_p50_websockify: {:.3}", setup[1]);
        println!("connect_setup_ms_p50_socat: {:.3}", setup[2]);
        println!("connect_setup_vs_websockify: {:.3}x", setup[0] / setup[1]);
        println!("connect_setup_vs_socat: {:.2}x", setup[0] / setup[2]);
    }
    if !want("memory") {
        return;
    }
    // ---- memory ----
    // Both proxies relay to the same echo process. websockify forks a process per connection,
    // so its memory is summed over its process group; PSS (proportional set size: shared pages
    // split between the processes sharing them) is the fair measure there, RSS double-counts
    // what the forks share. Per-connection figures are deltas over the idle process.
    let echo_proc = EchoProcess::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let wn: usize = std::env::var("ZIGRAL_BENCH_WSFY_CONNS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100);
    let w = Peer::start(Kind::Websockify, &zigral, echo_proc.addr);
    std::thread::sleep(Duration::from_millis(500));
    let w_idle = w.mem();
    let mut w_held: Vec<TcpStream> = Vec::new();
    rt.block_on(open_idle(w.port, wn, &mut w_held));
    std::thread::sleep(Duration::from_millis(500));
    let w_conns = w.mem();
    drop(w_held);
    drop(w);
    let w_rss_per = w_conns.rss.saturating_sub(w_idle.rss) as f64 / wn as f64;
    let w_pss_per = w_conns.pss.saturating_sub(w_idle.pss) as f64 / wn as f64;
    println!(
        "websockify_rss_per_conn_kib: {w_rss_per:.1} (sum of VmRSS over {} processes at {wn} connections)",
        w_conns.procs
    );
    println!("websockify_pss_per_conn_kib: {w_pss_per:.1}");

    let z = Peer::start(Kind::Zigral, &zigral, echo_proc.addr);
    std::thread::sleep(Duration::from_millis(500));
    let idle = z.mem();
    println!(
        "idle_rss_mib_zigral: {:.2} (goal <= 8)",
        idle.rss as f64 / 1024.0
    );
    println!("idle_rss_mib_websockify: {:.2}", w_idle.rss as f64 / 1024.0);
    println!(
        "idle_rss_vs_websockify: {:.2}x",
        idle.rss as f64 / w_idle.rss as f64
    );
    let mut stages: Vec<usize> = std::env::var("ZIGRAL_BENCH_CONNS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 1000, 10_000]);
    // The websockify connection count too, for a ratio at the same load.
    stages.push(wn);
    stages.sort_unstable();
    stages.dedup();
    let mut held: Vec<TcpStream> = Vec::new();
    for n in stages {
        let t = Instant::now();
        rt.block_on(open_idle(z.port, n, &mut held));
        let open_s = t.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(500));
        let m = z.mem();
        let per = m.rss.saturating_sub(idle.rss) as f64 / held.len() as f64;
        let pss_per = m.pss.saturating_sub(idle.pss) as f64 / held.len() as f64;
        println!(
            "mem_per_idle_conn_kib_at_{n}: {per:.1} (goal <= 64; rss {:.1} MiB, opened in {open_s:.1} s)",
            m.rss as f64 / 1024.0
        );
        if n == wn {
            println!("pss_per_idle_conn_kib_at_{n}_zigral: {pss_per:.1}");
            println!(
                "pss_per_conn_vs_websockify_at_{n}: {:.4}x (lower is better)",
                pss_per / w_pss_per
            );
        }
    }
    drop(held);
}

fn raise_nofile(n: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if setrlimit(Resource::RLIMIT_NOFILE, n, n).is_err()
        && let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The bench's TCP targets: a blaster, an echo server and a greeter (sends an RFB banner).
struct Targets {
    blast: SocketAddr,
    echo: SocketAddr,
    greet: SocketAddr,
}

impl Targets {
    fn start() -> Targets {
        let spawn = |f: fn(TcpStream)| {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            let a = l.local_addr().expect("addr");
            std::thread::spawn(move || {
                for s in l.incoming().flatten() {
                    let _ = s.set_nodelay(true);
                    std::thread::spawn(move || f(s));
                }
            });
            a
        };
        Targets {
            blast: spawn(|mut s| {
                let b = vec![0x5au8; 256 * 1024];
                while s.write_all(&b).is_ok() {}
            }),
            echo: spawn(|mut s| {
                let mut b = vec![0u8; 65536];
                while let Ok(n) = s.read(&mut b) {
                    if n == 0 || s.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            }),
            greet: spawn(|mut s| {
                let _ = s.write_all(b"RFB 003.008\n");
                let mut b = [0u8; 64];
                while matches!(s.read(&mut b), Ok(n) if n > 0) {}
            }),
        }
    }
}

/// An echo server in a child process (its own fd limit) for the 10,000-connection stage.
struct EchoProcess {
    _p: Proc,
    addr: SocketAddr,
}

impl EchoProcess {
    fn start() -> EchoProcess {
        let port = free_port();
        let mut cmd = Command::new(std::env::current_exe().expect("exe"));
        cmd.env("ZIGRAL_BENCH_ROLE", "echo")
            .env("ZIGRAL_BENCH_PORT", port.to_string())
            .stdout(Stdio::null());
        let p = Proc::spawn(cmd);
        wait_for(Duration::from_secs(20), "echo process", || {
            tcp_open(port).then_some(())
        });
        EchoProcess {
            _p: p,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

fn echo_process() {
    raise_nofile(65536);
    let port: u16 = std::env::var("ZIGRAL_BENCH_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .expect("ZIGRAL_BENCH_PORT");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        loop {
            if let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        }
    });
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Zigral,
    Websockify,
    Socat,
    Direct,
}

/// Memory of a process group, KiB.
#[derive(Debug, Default, Clone, Copy)]
struct Mem {
    rss: u64,
    pss: u64,
    procs: usize,
}

/// A proxy (or none) in front of a target.
struct Peer {
    kind: Kind,
    port: u16,
    proc: Option<Proc>,
}

impl Peer {
    fn start(kind: Kind, zigral: &std::path::Path, target: SocketAddr) -> Peer {
        if kind == Kind::Direct {
            return Peer {
                kind,
                port: target.port(),
                proc: None,
            };
        }
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = match kind {
            Kind::Zigral => {
                let mut c = Command::new(zigral);
                c.args(["proxy", &listen, &target.to_string()])
                    .args(["--heartbeat", "0", "--idle-timeout", "0"])
                    .args(["--max-connections", "0", "--max-per-ip", "0"])
                    .args([
                        "--threads",
                        &std::env::var("ZIGRAL_BENCH_THREADS").unwrap_or_else(|_| "1".into()),
                    ])
                    .env("ZIGRAL_LOG", "warn");
                c
            }
            Kind::Websockify => {
                let mut c = Command::new("websockify");
                c.args([&listen, &target.to_string()]);
                c
            }
            _ => {
                let mut c = Command::new("socat");
                c.args([
                    "-b",
                    "65536",
                    &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
                    &format!("TCP:{target}"),
                ]);
                c
            }
        };
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let p = Proc::spawn(cmd);
        wait_for(Duration::from_secs(30), "proxy to listen", || {
            tcp_open(port).then_some(())
        });
        Peer {
            kind,
            port,
            proc: Some(p),
        }
    }

    fn ws(&self) -> bool {
        matches!(self.kind, Kind::Zigral | Kind::Websockify)
    }

    /// Connects and, for WebSocket peers, performs the handshake (subprotocol `binary`).
    fn connect(&self) -> (TcpStream, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let mut rest = Vec::new();
        if self.ws() {
            let req = format!(
                "GET /websockify HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n",
                self.port
            );
            s.write_all(req.as_bytes()).expect("handshake write");
            let mut buf = vec![0u8; 4096];
            loop {
                let n = s.read(&mut buf).expect("handshake read");
                assert!(n > 0, "{:?}: eof in handshake", self.kind);
                rest.extend_from_slice(&buf[..n]);
                if let Some(i) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                    assert!(rest.starts_with(b"HTTP/1.1 101"), "{:?} refused", self.kind);
                    rest.drain(..i + 4);
                    break;
                }
            }
        }
        (s, rest)
    }

    /// Process-group CPU seconds (utime + stime of every live process in the group, plus
    /// reaped children of the leader).
    fn cpu_s(&self) -> f64 {
        let Some(p) = &self.proc else { return 0.0 };
        let pgid = p.pid();
        let tick = 100.0; // USER_HZ
        let mut total = 0u64;
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
                    continue;
                };
                let f: Vec<&str> = after.split_whitespace().collect();
                // fields after ')': state(0) ppid(1) pgrp(2) ... utime(11) stime(12) cutime(13) cstime(14)
                if f.len() > 14 && f[2].parse::<i32>().ok() == Some(pgid) {
                    let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
                    total += n(11) + n(12);
                    if pid == pgid {
                        total += n(13) + n(14);
                    }
                }
            }
        }
        total as f64 / tick
    }

    /// VmRSS and PSS summed over the process group, KiB, and how many processes it has.
    fn mem(&self) -> Mem {
        let mut m = Mem::default();
        let Some(p) = &self.proc else { return m };
        let pgid = p.pid();
        let field = |text: &str, key: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let in_group = stat
                    .rsplit_once(')')
                    .and_then(|(_, a)| a.split_whitespace().nth(2)?.parse::<i32>().ok())
                    == Some(pgid);
                if !in_group {
                    continue;
                }
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
                    .unwrap_or_default();
                m.rss += field(&status, "VmRSS:");
                m.pss += field(&rollup, "Pss:");
                m.procs += 1;
            }
        }
        m
    }

    /// MB/s server→client over `THROUGHPUT_SECS` and proxy CPU seconds per GB.
    fn throughput(&self) -> (f64, f64) {
        let (mut s, rest) = self.connect();
        let mut payload = 0u64;
        let mut parser = FrameSkipper::default();
        let ws = self.ws();
        let count = |data: &[u8], payload: &mut u64, parser: &mut FrameSkipper| {
            if ws {
                *payload += parser.feed(data);
            } else {
                *payload += data.len() as u64;
            }
        };
        count(&rest, &mut payload, &mut parser);
        let mut buf = vec![0u8; 256 * 1024];
        // warm-up
        let warm = Instant::now();
        while warm.elapsed() < Duration::from_millis(300) {
            let n = s.read(&mut buf).expect("read");
            assert!(n > 0);
            count(&buf[..n], &mut payload, &mut parser);
        }
        let cpu0 = self.cpu_s();
        let start_payload = payload;
        let t = Instant::now();
        while t.elapsed().as_secs_f64() < THROUGHPUT_SECS {
            let n = s.read(&mut buf).expect("read");
            assert!(n > 0);
            count(&buf[..n], &mut payload, &mut parser);
        }
        let secs = t.elapsed().as_secs_f64();
        let cpu = self.cpu_s() - cpu0;
        let bytes = (payload - start_payload) as f64;
        (bytes / secs / 1e6, cpu / (bytes / 1e9))
    }

    /// 10-byte round trips: (p50, p99) in µs.
    fn rtt(&self) -> (f64, f64) {
        let (mut s, _) = self.connect();
        let msg = *b"0123456789";
        let out = if self.ws() {
            masked_frame(&msg)
        } else {
            msg.to_vec()
        };
        let expect = if self.ws() { 12 } else { 10 };
        let mut buf = [0u8; 256];
        let mut times = Vec::with_capacity(RTT_ITERS);
        for i in 0..RTT_ITERS + 300 {
            let t = Instant::now();
            s.write_all(&out).expect("write");
            let mut got = 0;
            while got < expect {
                let n = s.read(&mut buf[got..]).expect("read");
                assert!(n > 0, "eof");
                got += n;
            }
            if i >= 300 {
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        times.sort_by(|a, b| a.total_cmp(b));
        (times[times.len() / 2], times[times.len() * 99 / 100])
    }

    /// Median ms from TCP connect to the VNC server's first bytes reaching the client.
    fn setup_ms(&self) -> f64 {
        let mut v = Vec::with_capacity(SETUP_ITERS);
        for _ in 0..SETUP_ITERS {
            let t = Instant::now();
            let (mut s, rest) = self.connect();
            let mut got = if self.ws() {
                FrameSkipper::default().feed(&rest)
            } else {
                rest.len() as u64
            };
            let mut buf = [0u8; 64];
            let mut p = FrameSkipper::default();
            while got < 12 {
                let n = s.read(&mut buf).expect("read");
                assert!(n > 0);
                got += if self.ws() {
                    p.feed(&buf[..n])
                } else {
                    n as u64
                };
            }
            v.push(t.elapsed().as_secs_f64() * 1e3);
        }
        median(&mut v)
    }
}

/// Counts payload bytes in a stream of unmasked server frames without copying them.
#[derive(Default)]
struct FrameSkipper {
    head: Vec<u8>,
    left: u64,
}

impl FrameSkipper {
    fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut payload = 0;
        while !data.is_empty() {
            if self.left > 0 {
                let n = self.left.min(data.len() as u64);
                payload += n;
                self.left -= n;
                data = &data[n as usize..];
                continue;
            }
            self.head.push(data[0]);
            data = &data[1..];
            let h = &self.head;
            if h.len() < 2 {
                continue;
            }
            let need = match h[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            if h.len() < need {
                continue;
            }
            self.left = match need {
                4 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&h[2..10]);
                    u64::from_be_bytes(b)
                }
                _ => u64::from(h[1] & 0x7f),
            };
            self.head.clear();
        }
        payload
    }
}

fn masked_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x82, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Opens WebSocket connections until `n` are held, verifying a sample echoes.
async fn open_idle(port: u16, n: usize, held: &mut Vec<TcpStream>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let need = n.saturating_sub(held.len());
    let mut tasks = Vec::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..need {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.expect("sem");
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            let req = format!(
                "GET /websockify HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.expect("write");
            let mut head = Vec::new();
            let mut b = [0u8; 512];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let k = s.read(&mut b).await.expect("read");
                assert!(k > 0, "eof in handshake");
                head.extend_from_slice(&b[..k]);
            }
            if i % 100 == 0 {
                s.write_all(&masked_frame(b"ping-echo!"))
                    .await
                    .expect("write");
                let mut got = 0;
                while got < 12 {
                    let k = s.read(&mut b).await.expect("read");
                    assert!(k > 0, "eof");
                    got += k;
                }
            }
            s.into_std().expect("into_std")
        }));
    }
    // A proxy out of file descriptors (4 per relayed connection with splice) stalls
    // handshakes: fail with the reason instead of hanging.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for t in tasks {
        match tokio::time::timeout_at(deadline, t).await {
            Ok(s) => held.push(s.expect("open task")),
            Err(_) => panic!(
                "opening {n} connections stalled at {} (the proxy's RLIMIT_NOFILE?)",
                held.len()
            ),
        }
    }
}
