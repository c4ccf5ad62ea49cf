//! Shared helpers of the proxy's integration tests: an in-process proxy on port 0, TCP
//! targets (echo, recorder, blaster), WebSocket clients (tokio-tungstenite and raw frames).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, http};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zigral_proxy::{Config, Proxy};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A proxy serving on 127.0.0.1:port until dropped (or `stop`ped).
pub struct Running {
    pub addr: SocketAddr,
    pub proxy: Proxy,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Triggers the draining shutdown and waits for `serve` to return.
    pub async fn stop(mut self) -> Duration {
        let t = std::time::Instant::now();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("serve task").expect("serve result");
        }
        t.elapsed()
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn sessions_open(&self) -> usize {
        self.proxy.metrics().totals().sessions_open
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn start(config: Config) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let proxy = Proxy::new(config).expect("proxy");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(zigral_proxy::serve(listener, proxy.clone(), async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        proxy,
        stop: Some(tx),
        task: Some(task),
    }
}

/// A TCP echo server; returns its address and a counter of accepted connections.
pub async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, accepted)
}

/// A TCP server that sends `greeting`, then records everything it receives into the returned
/// channel (one message per read) and counts accepted connections.
pub async fn recording_server(
    greeting: &'static [u8],
) -> (
    SocketAddr,
    Arc<AtomicUsize>,
    tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    recording_on(l, greeting).await
}

pub async fn recording_on(
    l: TcpListener,
    greeting: &'static [u8],
) -> (
    SocketAddr,
    Arc<AtomicUsize>,
    tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let addr = l.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let a = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = s.write_all(greeting).await;
                let mut b = vec![0u8; 65536];
                loop {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let _ = tx.send(b[..n].to_vec());
                        }
                    }
                }
            });
        }
    });
    (addr, accepted, rx)
}

/// A TCP server that writes data as fast as it can to every connection.
pub async fn blast_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let b = vec![0x5au8; 65536];
                while s.write_all(&b).await.is_ok() {}
            });
        }
    });
    addr
}

/// Opens a WebSocket offering the `binary` subprotocol (as noVNC does).
pub async fn connect(
    url: &str,
) -> Result<(Ws, http::Response<Option<Vec<u8>>>), tokio_tungstenite::tungstenite::Error> {
    let mut req = url.into_client_request().expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "binary".parse().expect("hv"));
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("connect timed out")
}

/// The HTTP status a WebSocket attempt got (101 on success).
pub async fn status_of(url: &str) -> u16 {
    match connect(url).await {
        Ok((_, r)) => r.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// Reads binary messages until `n` bytes arrived (frames may be split or merged).
pub async fn read_bytes(ws: &mut Ws, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("read timed out")
        {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected binary data, got {other:?}"),
        }
    }
    got
}

/// Waits for the close frame; returns its code.
pub async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("waiting for close timed out")
        {
            Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => return code.into(),
            Some(Ok(Message::Close(None))) => return 1005,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

pub async fn send(ws: &mut Ws, data: &[u8]) {
    ws.send(Message::Binary(data.to_vec().into()))
        .await
        .expect("send");
}

/// A raw TCP WebSocket client: performs the handshake by hand and returns the stream.
pub async fn raw_ws(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: binary\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut b))
            .await
            .expect("handshake timed out")
            .expect("read");
        assert!(
            n == 1,
            "eof during handshake: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    s
}

/// A WebSocket attempt over raw TCP that the proxy refuses: its HTTP status and body text.
pub async fn refusal(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .expect("status code");
            assert_ne!(status, 101, "the proxy accepted {path}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            if got.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&got[end + 4..end + 4 + len]);
                return (status, body.trim_end().to_owned());
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut b))
            .await
            .expect("response timed out")
            .expect("read");
        assert!(n > 0, "eof before the whole response: {got:?}");
        got.extend_from_slice(&b[..n]);
    }
}

/// A masked client frame.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n <= 0xffff {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads raw server frames until a close frame; returns its code (None on EOF first).
pub async fn raw_close_code(s: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut b = vec![0u8; 65536];
    loop {
        // parse complete frames in buf
        loop {
            if buf.len() < 2 {
                break;
            }
            let op = buf[0] & 0x0f;
            let (len, at) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => {
                    let mut x = [0u8; 8];
                    x.copy_from_slice(&buf[2..10]);
                    (u64::from_be_bytes(x) as usize, 10)
                }
                126 | 127 => break,
                n => (n as usize, 2),
            };
            assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
            if buf.len() < at + len {
                break;
            }
            if op == 8 {
                return Some(if len >= 2 {
                    u16::from_be_bytes([buf[at], buf[at + 1]])
                } else {
                    1005
                });
            }
            buf.drain(..at + len);
        }
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut b))
            .await
            .expect("read timed out")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    }
}

/// Polls `f` until true or panics after `secs`.
pub async fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Raises the soft open-file limit to the hard limit.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    hard
}
