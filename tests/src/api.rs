//! A small blocking client for the appliance's HTTP API and proxy, shared by the whole-stack
//! and VM image tests: JSON requests with a bearer token, login, sessions, viewer tokens, and a
//! WebSocket handshake through the proxy that returns the VNC server's RFB greeting.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

/// Minimal HTTP/1.1 client for the control plane (JSON in, body text out).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(5),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    if let Some(t) = bearer {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes())?;
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let (mut len, mut chunked) = (None, false);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                len = v.parse::<usize>().ok();
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk)?;
            out.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = len {
        out.resize(n, 0);
        r.read_exact(&mut out)?;
    } else {
        r.read_to_end(&mut out)?;
    }
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

pub fn json_ok(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Value {
    let (st, text) =
        http(port, method, path, bearer, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert!((200..300).contains(&st), "{method} {path} -> {st}: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: bad JSON {e}: {text}"))
    }
}

pub fn login(port: u16, password: &str) -> String {
    let v = json_ok(
        port,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({"username": "admin", "password": password})),
    );
    v["token"].as_str().expect("login token").to_owned()
}

/// Logs in as `user` and returns the bearer token.
pub fn login_as(port: u16, user: &str, password: &str) -> String {
    let v = json_ok(
        port,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({"username": user, "password": password})),
    );
    v["token"].as_str().expect("login token").to_owned()
}

pub fn create_session(port: u16, token: &str, title: &str) -> String {
    let v = json_ok(
        port,
        "POST",
        "/api/v1/sessions",
        Some(token),
        Some(&json!({"title": title})),
    );
    v["id"].as_str().expect("session id").to_owned()
}

/// Opens a WebSocket to the proxy with a view token and returns the first binary payload
/// (the VNC server's RFB greeting).
pub fn rfb_greeting(proxy_port: u16, token: &str) -> std::io::Result<String> {
    open_viewer(proxy_port, token).map(|(_, greeting)| greeting)
}

/// [`rfb_greeting`], keeping the connection open: a live viewer while the stream is held.
pub fn open_viewer(proxy_port: u16, token: &str) -> std::io::Result<(TcpStream, String)> {
    open_viewer_at(proxy_port, "", token)
}

/// [`open_viewer`] under a path prefix (a fleet's `/a/<name>`).
pub fn open_viewer_at(
    port: u16,
    prefix: &str,
    token: &str,
) -> std::io::Result<(TcpStream, String)> {
    let mut s = websocket(
        port,
        &format!("{prefix}/websockify?token={token}"),
        "Sec-WebSocket-Protocol: binary\r\n",
        Duration::from_secs(30),
    )?;
    let (opcode, payload) = frame(&mut s)?;
    let text = String::from_utf8_lossy(&payload).into_owned();
    // 0x2 = binary data; a close frame (0x8) means the VNC server is not up yet: retry.
    if opcode != 0x2 {
        return Err(std::io::Error::other(format!(
            "frame opcode {opcode:#x}: {text:?}"
        )));
    }
    Ok((s, text))
}

pub fn view_token(port: u16, token: &str, session: &str) -> String {
    let v = json_ok(
        port,
        "POST",
        &format!("/api/v1/sessions/{session}/view-token"),
        Some(token),
        Some(&json!({})),
    );
    v["token"].as_str().expect("view token").to_owned()
}

/// Opens the control plane's events websocket (`/api/v1/events`) with a bearer token.
pub fn events(port: u16, token: &str) -> std::io::Result<TcpStream> {
    events_at(port, "", token)
}

/// [`events`] under a path prefix (a fleet's `/a/<name>`).
pub fn events_at(port: u16, prefix: &str, token: &str) -> std::io::Result<TcpStream> {
    websocket(
        port,
        &format!("{prefix}/api/v1/events"),
        &format!("Authorization: Bearer {token}\r\n"),
        Duration::from_secs(120),
    )
}

/// A WebSocket client handshake on 127.0.0.1:`port` for `path` with `extra` header lines;
/// fails unless the server answers 101.
fn websocket(port: u16, path: &str, extra: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         {extra}\r\n"
    )?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(std::io::Error::other(format!(
                "closed during handshake: {}",
                String::from_utf8_lossy(&head)
            )));
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(format!(
            "no upgrade: {}",
            String::from_utf8_lossy(&head)
        )));
    }
    Ok(s)
}

/// One frame the server wrote (unmasked): its opcode and payload.
fn frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let mut len = u64::from(h[1] & 0x7f);
    if len == 126 {
        let mut e = [0u8; 2];
        s.read_exact(&mut e)?;
        len = u64::from(u16::from_be_bytes(e));
    } else if len == 127 {
        let mut e = [0u8; 8];
        s.read_exact(&mut e)?;
        len = u64::from_be_bytes(e);
    }
    let mut payload = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
    s.read_exact(&mut payload)?;
    Ok((h[0] & 0x0f, payload))
}

/// The next text frame of a websocket the server writes (unmasked, unfragmented), skipping
/// pings and other control frames.
pub fn next_text(s: &mut TcpStream) -> std::io::Result<String> {
    loop {
        match frame(s)? {
            (0x1, payload) => return Ok(String::from_utf8_lossy(&payload).into_owned()),
            (0x8, _) => return Err(std::io::Error::other("websocket closed")),
            _ => {}
        }
    }
}
