//! Fleet routing overhead (harness = false; prints `name: value` lines): what HAProxy in front
//! of the appliances (issue 17) adds per HTTP request and per WebSocket frame, against the same
//! stand-in appliance reached directly, in the same run.
//!
//! HAProxy runs the real fleet configuration (deploy/haproxy/haproxy.cfg + a backends file
//! written by `deploy/haproxy/gen-backends.sh static`, as tests/tests/deploy.rs does) on
//! loopback in front of two stand-in appliances, and requests take the pinned routes:
//! `/a/zigral-0/healthz` (control port, prefix stripped, X-Forwarded-* set, one log line per
//! request) and `/a/zigral-0/websockify?token=x` (viewer port: a real HTTP Upgrade, then
//! HAProxy's tunnel). The stand-ins answer a small JSON body on kept-alive connections, and
//! after an Upgrade echo WebSocket frames or stream N frames of S bytes on a text command; one
//! thread per connection, blocking IO, TCP_NODELAY on every socket. Direct and HAProxy runs
//! alternate in rounds (pooled samples):
//! - HTTP on a kept-alive connection: round trip median / p99, and what HAProxy adds;
//! - HTTP on a new connection per request (connect + request + response, `Connection: close`);
//! - WebSocket, 64-byte binary frames (input events): echo round trip median / p99;
//! - WebSocket, 256 KiB binary frames server → client (framebuffer updates): MiB/s.
//!
//!
//! Twice, each with its own HAProxy and stand-ins: as the scheduler places client, stand-ins
//! and HAProxy (its default threads, one per CPU) on this host's CPUs, and then all of them
//! pinned to one CPU (HAProxy then runs one thread), metric names ending in `_one_core`. On a
//! small VM the first mixes HAProxy's own cost with cross-CPU wake-ups of idle vCPUs, which
//! vary from run to run; the second is closer to HAProxy's processing cost. In a fleet HAProxy
//! has its own machine and adds a network hop on top. Needs haproxy (Debian package;
//! scripts/install-deps.sh).
//!
//! Run: `cargo bench -p zigral-tests --bench fleet` (`make bench`).
#![allow(clippy::unwrap_used)] // bench code: a failed unwrap is a failed run

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use zigral_tests::haproxy::{Appliance, Haproxy, backends};
use zigral_tests::{free_port, http_get, wait_for};

/// The appliance the pinned routes name.
const NAME: &str = "zigral-0";
/// Rounds of (direct, HAProxy) for the latency figures; the order alternates each round.
const ROUNDS: usize = 20;
/// Per round and path: requests on one kept-alive connection.
const HTTP_ITERS: usize = 2000;
/// Per round and path: requests on a new connection each.
const CONN_ITERS: usize = 200;
/// Per round and path: small frames echoed.
const WS_ITERS: usize = 2000;
/// Untimed requests / frames per path before the first round.
const WARMUP: usize = 500;
const SMALL: usize = 64;
const LARGE: usize = 256 * 1024;
/// Runs of (direct, HAProxy) for the throughput figure, `TP_FRAMES` large frames each.
const TP_ROUNDS: usize = 4;
const TP_FRAMES: usize = 2048; // 512 MiB
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// RFC 6455's sample key and its accept value (the stand-in checks the client sends it).
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const WS_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;

// ------------------------------------------------------------------------------ stand-ins

/// A stand-in appliance port (`kind` = control or viewer): JSON answers on kept-alive
/// connections, WebSocket after an Upgrade.
fn serve(name: &'static str, kind: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                // A peer that goes away mid-request (a health check, a finished run) is fine.
                let _ = handle(s, name, kind);
            });
        }
    });
    port
}

/// What the stand-in needs of a request head.
#[derive(Default)]
struct Head {
    target: String,
    prefix: String,
    close: bool,
    upgrade: bool,
    key: String,
}

/// Reads one request head; `None` on a clean end of the connection.
fn read_head(r: &mut impl BufRead, line: &mut String) -> io::Result<Option<Head>> {
    line.clear();
    if r.read_line(line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let _method = parts.next();
    let mut h = Head {
        target: parts.next().unwrap_or_default().to_owned(),
        close: parts.next() == Some("HTTP/1.0"), // HAProxy's health checks
        ..Head::default()
    };
    loop {
        line.clear();
        if r.read_line(line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok(Some(h));
        }
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("connection") {
            if v.eq_ignore_ascii_case("close") {
                h.close = true;
            } else if v.to_ascii_lowercase().contains("keep-alive") {
                h.close = false;
            }
        } else if k.eq_ignore_ascii_case("upgrade") {
            h.upgrade = v.eq_ignore_ascii_case("websocket");
        } else if k.eq_ignore_ascii_case("x-forwarded-prefix") {
            h.prefix = v.to_owned();
        } else if k.eq_ignore_ascii_case("sec-websocket-key") {
            h.key = v.to_owned();
        }
    }
}

fn handle(s: TcpStream, name: &str, kind: &str) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::with_capacity(64 * 1024, s);
    let mut line = String::new();
    let mut out = Vec::with_capacity(512);
    while let Some(h) = read_head(&mut r, &mut line)? {
        if h.upgrade {
            if h.key != WS_KEY {
                w.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )?;
                return Ok(());
            }
            write!(
                w,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {WS_ACCEPT}\r\nX-Appliance: {name}/{kind}{}\r\n\r\n",
                h.target
            )?;
            return ws_serve(r, w);
        }
        // About the size of a session object (GET /api/v1/sessions/{id}).
        let body = format!(
            "{{\"id\":\"7c0e2d9a\",\"title\":\"bench\",\"state\":\"running\",\"desktop\":3,\
             \"appliance\":\"{name}\",\"port\":\"{kind}\",\"target\":\"{}\",\"prefix\":\"{}\"}}",
            h.target, h.prefix
        );
        out.clear();
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if h.close { "Connection: close\r\n" } else { "" }
        )?;
        w.write_all(&out)?;
        if h.close {
            return Ok(());
        }
    }
    Ok(())
}

/// After the Upgrade: binary frames are echoed; a text frame `send N S` is answered with N
/// binary frames of S bytes; close is answered with close.
fn ws_serve(mut r: BufReader<TcpStream>, mut w: TcpStream) -> io::Result<()> {
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    loop {
        match read_frame(&mut r, &mut buf, true)? {
            OP_BINARY => {
                out.clear();
                frame_header(&mut out, OP_BINARY, buf.len(), None);
                out.extend_from_slice(&buf);
                w.write_all(&out)?;
            }
            OP_TEXT => {
                let cmd = String::from_utf8_lossy(&buf).into_owned();
                let mut f = cmd.split_whitespace();
                let (Some("send"), Some(n), Some(size), None) =
                    (f.next(), f.next(), f.next(), f.next())
                else {
                    return Err(io::Error::other(format!("bad command {cmd:?}")));
                };
                let n: usize = n.parse().map_err(io::Error::other)?;
                let size: usize = size.parse().map_err(io::Error::other)?;
                let mut frame = Vec::with_capacity(size + 14);
                frame_header(&mut frame, OP_BINARY, size, None);
                frame.extend((0..size).map(|i| i as u8));
                for _ in 0..n {
                    w.write_all(&frame)?;
                }
            }
            OP_CLOSE => {
                out.clear();
                frame_header(&mut out, OP_CLOSE, 0, None);
                return w.write_all(&out);
            }
            op => return Err(io::Error::other(format!("unexpected opcode {op}"))),
        }
    }
}

// ------------------------------------------------------------------------------ WebSocket

/// Appends a final frame's header (and the mask key when `mask` is given).
fn frame_header(out: &mut Vec<u8>, op: u8, len: usize, mask: Option<[u8; 4]>) {
    out.push(0x80 | op);
    let m = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(k) = mask {
        out.extend_from_slice(&k);
    }
}

/// Reads one final frame into `buf` (unmasked) and returns its opcode. Client frames must be
/// masked, server frames must not (RFC 6455 5.1).
fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>, masked: bool) -> io::Result<u8> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h)?;
    if h[0] & 0x80 == 0 {
        return Err(io::Error::other("fragmented frame (not used here)"));
    }
    if (h[1] & 0x80 != 0) != masked {
        return Err(io::Error::other(format!(
            "frame masking: want masked={masked}"
        )));
    }
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            usize::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            usize::try_from(u64::from_be_bytes(b)).map_err(io::Error::other)?
        }
        n => usize::from(n),
    };
    let mut key = [0u8; 4];
    if masked {
        r.read_exact(&mut key)?;
    }
    buf.resize(len, 0);
    r.read_exact(buf)?;
    if masked {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[i & 3];
        }
    }
    Ok(h[0] & 0x0f)
}

/// A WebSocket client connection after a checked Upgrade.
struct Ws {
    r: BufReader<TcpStream>,
    w: TcpStream,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl Ws {
    /// Connects to 127.0.0.1:`port`, upgrades `path` and checks that the stand-in `expect`
    /// (`name/kind/target`) answered the 101.
    fn connect(port: u16, path: &str, expect: &str) -> Ws {
        let s = connect(port);
        let mut w = s.try_clone().unwrap();
        write!(
            w,
            "GET {path} HTTP/1.1\r\nHost: fleet\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut r = BufReader::with_capacity(LARGE, s);
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            assert!(
                r.read_line(&mut head).unwrap() > 0,
                "{path} on :{port}: closed during the Upgrade: {head}"
            );
        }
        let lower = head.to_ascii_lowercase(); // (HAProxy passes header names in lower case)
        assert!(
            head.starts_with("HTTP/1.1 101")
                && lower.contains(&format!(
                    "sec-websocket-accept: {}",
                    WS_ACCEPT.to_lowercase()
                ))
                && lower.contains(&format!("x-appliance: {expect}")),
            "{path} on :{port}: not the Upgrade of {expect}:\n{head}"
        );
        Ws {
            r,
            w,
            out: Vec::with_capacity(SMALL + 14),
            buf: Vec::with_capacity(LARGE),
        }
    }

    fn send(&mut self, op: u8, payload: &[u8]) {
        self.out.clear();
        frame_header(&mut self.out, op, payload.len(), Some(WS_MASK));
        self.out
            .extend(payload.iter().enumerate().map(|(i, b)| b ^ WS_MASK[i & 3]));
        self.w.write_all(&self.out).unwrap();
    }

    /// Reads one server frame into `self.buf`; returns its opcode.
    fn recv(&mut self) -> u8 {
        read_frame(&mut self.r, &mut self.buf, false).unwrap()
    }

    /// One small binary frame out and its echo back; returns the round trip in ns.
    fn echo(&mut self, payload: &[u8]) -> u64 {
        let t = Instant::now();
        self.send(OP_BINARY, payload);
        let op = self.recv();
        let ns = t.elapsed().as_nanos() as u64;
        assert!(op == OP_BINARY && self.buf == payload, "bad echo");
        ns
    }

    /// `TP_FRAMES` large frames server → client; returns MiB/s.
    fn stream(&mut self) -> f64 {
        let t = Instant::now();
        self.send(OP_TEXT, format!("send {TP_FRAMES} {LARGE}").as_bytes());
        for _ in 0..TP_FRAMES {
            let op = self.recv();
            assert!(
                op == OP_BINARY && self.buf.len() == LARGE,
                "bad large frame"
            );
        }
        let secs = t.elapsed().as_secs_f64();
        assert!(
            self.buf[LARGE - 1] == (LARGE - 1) as u8,
            "large frame payload"
        );
        (TP_FRAMES * LARGE) as f64 / (1024.0 * 1024.0) / secs
    }

    fn close(mut self) {
        self.send(OP_CLOSE, &[]);
        assert_eq!(self.recv(), OP_CLOSE, "close answered");
    }
}

// ------------------------------------------------------------------------------ HTTP client

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `req` and reads one whole response (Content-Length) into `buf`; panics unless 200.
/// Returns where the body starts.
fn round_trip(s: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> usize {
    s.write_all(req).unwrap();
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before a whole response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = find(buf, b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..end]).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no Content-Length in {head}"));
        if buf.len() >= end + 4 + len {
            assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
            return end + 4;
        }
    }
}

/// Timed round trips on one kept-alive connection, in ns.
fn keepalive(s: &mut TcpStream, req: &[u8], n: usize, buf: &mut Vec<u8>, out: &mut Vec<u64>) {
    for _ in 0..n {
        let t = Instant::now();
        round_trip(s, req, buf);
        out.push(t.elapsed().as_nanos() as u64);
    }
}

/// Timed connect + request + response, one new connection each, in ns.
fn new_conns(port: u16, req: &[u8], n: usize, buf: &mut Vec<u8>, out: &mut Vec<u64>) {
    for _ in 0..n {
        let t = Instant::now();
        let mut s = connect(port);
        round_trip(&mut s, req, buf);
        out.push(t.elapsed().as_nanos() as u64);
    }
}

// ------------------------------------------------------------------------------ setup

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p =
            std::env::temp_dir().join(format!("zigral-bench-fleet-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ------------------------------------------------------------------------------ figures

fn median_p99(mut v: Vec<u64>) -> (f64, f64) {
    v.sort_unstable();
    let us = |i: usize| v[i.min(v.len() - 1)] as f64 / 1000.0;
    (us(v.len() / 2), us(v.len() * 99 / 100))
}

/// `{peer}_{what}_rtt_{median,p99}_us{sfx}`, what HAProxy adds and the ratio of the medians.
fn report(what: &str, sfx: &str, direct: Vec<u64>, haproxy: Vec<u64>) {
    let n = direct.len();
    let (dm, dp) = median_p99(direct);
    let (hm, hp) = median_p99(haproxy);
    println!("direct_{what}_rtt_median_us{sfx}: {dm:.1}");
    println!("haproxy_{what}_rtt_median_us{sfx}: {hm:.1}");
    println!("haproxy_{what}_added_us{sfx}: {:.1}", hm - dm);
    println!("haproxy_{what}_rtt_ratio{sfx}: {:.2}", hm / dm);
    println!("direct_{what}_rtt_p99_us{sfx}: {dp:.1}");
    println!("haproxy_{what}_rtt_p99_us{sfx}: {hp:.1}");
    println!("haproxy_{what}_p99_added_us{sfx}: {:.1}", hp - dp);
    println!("{what}_samples_per_path{sfx}: {n}");
}

/// Runs `f(haproxy?)` for both paths, `rounds` times, alternating which goes first.
fn alternate(rounds: usize, mut f: impl FnMut(bool)) {
    for round in 0..rounds {
        let first = round % 2 == 1;
        f(first);
        f(!first);
    }
}

/// HAProxy with the fleet configuration in front of two stand-in appliances.
struct Fleet {
    port: u16,
    control0: u16,
    viewer0: u16,
    nbthread: String,
    _proxy: Haproxy,
    _tmp: TempDir,
}

impl Fleet {
    fn start(tag: &str) -> Fleet {
        let tmp = TempDir::new(tag);
        // Two appliances as the fleet lists them; the figures use zigral-0. No capacity
        // agents: only new work (be_pool) would look at them.
        let (control0, viewer0) = (serve(NAME, "control"), serve(NAME, "viewer"));
        let list = [
            Appliance {
                name: NAME,
                control: control0,
                viewer: viewer0,
                agent: free_port(),
            },
            Appliance {
                name: "zigral-1",
                control: serve("zigral-1", "control"),
                viewer: serve("zigral-1", "viewer"),
                agent: free_port(),
            },
        ];
        let proxy = Haproxy::start(&tmp.0, &backends(&list));
        let port = proxy.port;
        let routed = format!("/a/{NAME}/healthz");
        let first = wait_for(
            Duration::from_secs(10),
            "HAProxy routing to zigral-0",
            || http_get(port, &routed).ok().filter(|(s, _)| *s == 200),
        );

        // The measured paths are the real ones: pinned, prefix stripped, prefix header set.
        let via: serde_json::Value = serde_json::from_str(&first.1).unwrap();
        assert_eq!(
            (
                &via["appliance"],
                &via["port"],
                &via["target"],
                &via["prefix"]
            ),
            (
                &NAME.into(),
                &"control".into(),
                &"/healthz".into(),
                &format!("/a/{NAME}").into()
            ),
            "{via}"
        );
        let (st, body) = http_get(control0, "/healthz").unwrap();
        let direct: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((st, &direct["prefix"]), (200, &"".into()), "{direct}");

        // How many threads HAProxy chose (its default: one per CPU it may run on).
        let nbthread = proxy
            .runtime("show info")
            .lines()
            .find_map(|l| l.strip_prefix("Nbthread: "))
            .unwrap_or("?")
            .to_owned();
        Fleet {
            port,
            control0,
            viewer0,
            nbthread,
            _proxy: proxy,
            _tmp: tmp,
        }
    }
}

/// Every figure, direct vs through `f`; metric names end in `sfx`.
fn measure(f: &Fleet, sfx: &str) {
    let (fleet, control0, viewer0) = (f.port, f.control0, f.viewer0);
    println!("haproxy_nbthread{sfx}: {}", f.nbthread);
    let mut buf = Vec::with_capacity(4096);

    // ---- HTTP, kept-alive connection
    let req_d = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec();
    let req_h = format!("GET /a/{NAME}/healthz HTTP/1.1\r\nHost: fleet\r\n\r\n").into_bytes();
    let (mut cd, mut ch) = (connect(control0), connect(fleet));
    let (mut td, mut th) = (Vec::new(), Vec::new());
    keepalive(&mut cd, &req_d, WARMUP, &mut buf, &mut Vec::new());
    keepalive(&mut ch, &req_h, WARMUP, &mut buf, &mut Vec::new());
    alternate(ROUNDS, |via_haproxy| {
        if via_haproxy {
            keepalive(&mut ch, &req_h, HTTP_ITERS, &mut buf, &mut th);
        } else {
            keepalive(&mut cd, &req_d, HTTP_ITERS, &mut buf, &mut td);
        }
    });
    drop((cd, ch));
    report("http", sfx, td, th);

    // ---- HTTP, new connection per request
    let req_d = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_vec();
    let req_h =
        format!("GET /a/{NAME}/healthz HTTP/1.1\r\nHost: fleet\r\nConnection: close\r\n\r\n")
            .into_bytes();
    let (mut td, mut th) = (Vec::new(), Vec::new());
    new_conns(control0, &req_d, WARMUP / 5, &mut buf, &mut Vec::new());
    new_conns(fleet, &req_h, WARMUP / 5, &mut buf, &mut Vec::new());
    alternate(ROUNDS, |via_haproxy| {
        if via_haproxy {
            new_conns(fleet, &req_h, CONN_ITERS, &mut buf, &mut th);
        } else {
            new_conns(control0, &req_d, CONN_ITERS, &mut buf, &mut td);
        }
    });
    report("http_newconn", sfx, td, th);

    // ---- WebSocket (viewer route), small frames echoed
    let expect = format!("{NAME}/viewer/websockify?token=x");
    let mut wd = Ws::connect(viewer0, "/websockify?token=x", &expect);
    let mut wh = Ws::connect(fleet, &format!("/a/{NAME}/websockify?token=x"), &expect);
    let small: Vec<u8> = (0..SMALL).map(|i| (i * 7) as u8).collect();
    for _ in 0..WARMUP {
        wd.echo(&small);
        wh.echo(&small);
    }
    let (mut td, mut th) = (Vec::new(), Vec::new());
    alternate(ROUNDS, |via_haproxy| {
        let (ws, out) = if via_haproxy {
            (&mut wh, &mut th)
        } else {
            (&mut wd, &mut td)
        };
        for _ in 0..WS_ITERS {
            out.push(ws.echo(&small));
        }
    });
    report("ws", sfx, td, th);

    // ---- WebSocket, large frames server → client
    let (mut md, mut mh) = (Vec::new(), Vec::new());
    alternate(TP_ROUNDS, |via_haproxy| {
        if via_haproxy {
            mh.push(wh.stream());
        } else {
            md.push(wd.stream());
        }
    });
    wd.close();
    wh.close();
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, h) = (med(&md), med(&mh));
    let us_per_frame = |mib_s: f64| LARGE as f64 / (mib_s * 1024.0 * 1024.0) * 1e6;
    println!("direct_ws_256k_mib_s{sfx}: {d:.0}");
    println!("haproxy_ws_256k_mib_s{sfx}: {h:.0}");
    println!("haproxy_ws_256k_ratio{sfx}: {:.2}", h / d);
    println!("direct_ws_256k_us_per_frame{sfx}: {:.1}", us_per_frame(d));
    println!("haproxy_ws_256k_us_per_frame{sfx}: {:.1}", us_per_frame(h));
    println!(
        "haproxy_ws_256k_added_us_per_frame{sfx}: {:.1}",
        us_per_frame(h) - us_per_frame(d)
    );
    println!("direct_ws_256k_mib_s_runs{sfx}: {md:.0?}");
    println!("haproxy_ws_256k_mib_s_runs{sfx}: {mh:.0?}");
}

fn main() {
    let version = Command::new(zigral_tests::haproxy::binary())
        .arg("-v")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    let me = Pid::from_raw(0);
    let cpus = sched_getaffinity(me).unwrap();
    let allowed: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| cpus.is_set(c).unwrap_or(false))
        .collect();
    println!(
        "# fleet routing bench: {}",
        version.lines().next().unwrap_or("haproxy")
    );
    println!(
        "# direct = the stand-in appliance's port; haproxy = deploy/haproxy/haproxy.cfg on \
         loopback, route /a/{NAME}/...; client, HAProxy and stand-ins share CPUs {allowed:?}"
    );
    let started = Instant::now();

    // As the scheduler places things (HAProxy's default threads, one per CPU).
    let fleet = Fleet::start("default");
    measure(&fleet, "");
    drop(fleet);

    // Everything on one CPU (HAProxy then runs one thread): no cross-CPU wake-ups, so the
    // HAProxy figures are closer to its own processing cost per request and per frame.
    let one = *allowed.last().unwrap();
    println!("# _one_core: client, stand-ins and HAProxy pinned to CPU {one}");
    let mut pin = CpuSet::new();
    pin.set(one).unwrap();
    sched_setaffinity(me, &pin).unwrap();
    let fleet = Fleet::start("one-core");
    measure(&fleet, "_one_core");
    drop(fleet);
    sched_setaffinity(me, &cpus).unwrap();

    println!(
        "fleet_bench_measure_s: {:.1}",
        started.elapsed().as_secs_f64()
    );
}
