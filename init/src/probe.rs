//! Readiness probes (path exists, TCP connect with optional banner, HTTP 200, X11 setup
//! handshake), run on short-lived threads that report back to the event loop.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::config::{Probe, ProbeKind};

/// What a probe thread reports.
#[derive(Debug)]
pub struct ProbeResult {
    pub service: String,
    pub generation: u64,
    pub ready: bool,
    pub elapsed: Duration,
    pub last_error: String,
}

const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);

fn connect_tcp(addr: &str, deadline: Duration) -> Result<TcpStream, String> {
    let mut last = String::from("no address");
    let addrs = addr
        .to_socket_addrs()
        .map_err(|e| format!("resolve {addr}: {e}"))?;
    for a in addrs {
        match TcpStream::connect_timeout(&a, deadline) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("connect {a}: {e}"),
        }
    }
    Err(last)
}

/// One attempt of `kind`. `Ok(())` means ready.
pub fn check(kind: &ProbeKind) -> Result<(), String> {
    match kind {
        ProbeKind::Path(p) => {
            if p.exists() {
                Ok(())
            } else {
                Err(format!("{} does not exist", p.display()))
            }
        }
        ProbeKind::Tcp { addr, expect } => {
            let mut s = connect_tcp(addr, ATTEMPT_TIMEOUT)?;
            if let Some(want) = expect {
                s.set_read_timeout(Some(ATTEMPT_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                let mut got = vec![0u8; want.len()];
                let mut n = 0;
                while n < got.len() {
                    match s.read(&mut got[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) => return Err(format!("read {addr}: {e}")),
                    }
                }
                if &got[..n] != want.as_slice() {
                    return Err(format!(
                        "{addr} sent {:?}, expected {:?}",
                        String::from_utf8_lossy(&got[..n]),
                        String::from_utf8_lossy(want)
                    ));
                }
            }
            Ok(())
        }
        ProbeKind::Http { addr, host, path } => {
            let mut s = connect_tcp(addr, ATTEMPT_TIMEOUT)?;
            s.set_read_timeout(Some(ATTEMPT_TIMEOUT))
                .map_err(|e| e.to_string())?;
            // HTTP/1.1: Chromium's DevTools server rejects HTTP/1.0. Only the status line is
            // read, so a kept-open connection does not matter.
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            )
            .map_err(|e| format!("write {addr}: {e}"))?;
            let mut buf = [0u8; 64];
            let mut n = 0;
            while n < 12 {
                match s.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) => return Err(format!("read {addr}: {e}")),
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let status = head.split_whitespace().nth(1).unwrap_or("");
            if head.starts_with("HTTP/1.") && status == "200" {
                Ok(())
            } else {
                Err(format!("GET http://{host}{path}: {:?}", head.trim()))
            }
        }
        ProbeKind::X11 {
            display,
            handshake: true,
        } => x11_handshake(*display),
        ProbeKind::X11 {
            display,
            handshake: false,
        } => {
            let path = format!("/tmp/.X11-unix/X{display}");
            // A stale socket file of a dead server refuses the connection.
            UnixStream::connect(&path)
                .map(drop)
                .map_err(|e| format!("connect {path}: {e}"))
        }
    }
}

/// Connects to `/tmp/.X11-unix/X<d>` and performs the X11 connection setup (no auth).
pub fn x11_handshake(d: u32) -> Result<(), String> {
    let path = format!("/tmp/.X11-unix/X{d}");
    let mut s = UnixStream::connect(&path).map_err(|e| format!("connect {path}: {e}"))?;
    s.set_read_timeout(Some(ATTEMPT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    // 'l' = little endian, pad, major 11, minor 0, auth name len 0, auth data len 0, pad.
    let req: [u8; 12] = [b'l', 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    s.write_all(&req)
        .map_err(|e| format!("write {path}: {e}"))?;
    let mut b = [0u8; 8];
    s.read_exact(&mut b)
        .map_err(|e| format!("read {path}: {e}"))?;
    match b[0] {
        1 => Ok(()),
        // A server that wants a cookie we do not present (Failed: "Authorization required",
        // or Authenticate) is up and answering: that is all readiness asks.
        0 | 2 => Ok(()),
        other => Err(format!("X server :{d} sent an unknown setup reply {other}")),
    }
}

/// Runs `probe` on a new thread until it passes, times out or is cancelled, then sends the
/// result on `tx` and writes one byte to `wake` (the event loop's wake-up pipe).
pub fn spawn(
    service: String,
    generation: u64,
    probe: Probe,
    cancel: Arc<AtomicBool>,
    tx: Sender<ProbeResult>,
    mut wake: std::io::PipeWriter,
) {
    let name = format!("probe-{service}");
    let res = std::thread::Builder::new()
        .name(name)
        .stack_size(64 * 1024)
        .spawn(move || {
            let start = Instant::now();
            let mut last_error = String::new();
            let ready = loop {
                if cancel.load(Ordering::Relaxed) {
                    return;
                }
                match check(&probe.kind) {
                    Ok(()) => break true,
                    Err(e) => last_error = e,
                }
                if start.elapsed() >= probe.timeout {
                    break false;
                }
                std::thread::sleep(probe.interval);
            };
            if cancel.load(Ordering::Relaxed) {
                return;
            }
            let _ = tx.send(ProbeResult {
                service,
                generation,
                ready,
                elapsed: start.elapsed(),
                last_error,
            });
            let _ = wake.write(&[1]);
        });
    if let Err(e) = res {
        tracing::error!("cannot start probe thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_probe_with_banner() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut c, _) = l.accept().unwrap();
                c.write_all(b"RFB 003.008\n").unwrap();
            }
        });
        assert!(
            check(&ProbeKind::Tcp {
                addr: addr.clone(),
                expect: Some(b"RFB ".to_vec())
            })
            .is_ok()
        );
        assert!(
            check(&ProbeKind::Tcp {
                addr,
                expect: Some(b"SSH-".to_vec())
            })
            .is_err()
        );
        t.join().unwrap();
    }

    #[test]
    fn http_probe_needs_200() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            for status in ["200 OK", "404 Not Found"] {
                let (mut c, _) = l.accept().unwrap();
                // The request may arrive in more than one read: read up to the blank line.
                let mut req = Vec::new();
                let mut b = [0u8; 256];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = c.read(&mut b).unwrap();
                    assert!(n > 0, "request cut short: {req:?}");
                    req.extend_from_slice(&b[..n]);
                }
                assert!(String::from_utf8_lossy(&req).starts_with("GET /json/version HTTP/1.1"));
                // Keep the connection open like Chromium does.
                c.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\n{{}}").as_bytes(),
                )
                .unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let k = ProbeKind::Http {
            addr: addr.clone(),
            host: addr.clone(),
            path: "/json/version".into(),
        };
        assert!(check(&k).is_ok());
        assert!(check(&k).is_err());
        t.join().unwrap();
    }
}
