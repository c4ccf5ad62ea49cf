//! Test support (feature `testkit`): start a real headful Chromium on an Xvfb display with CDP
//! on a free loopback port, and serve test pages from 127.0.0.1. Used by this crate's and
//! zigral-actions' integration tests and benches.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zigral_tests::{Proc, free_port, http_get, wait_for};

/// A Chromium started by a test (killed with its process group on drop).
#[derive(Debug)]
pub struct Chrome {
    pub port: u16,
    pub display: u32,
    pub profile: PathBuf,
    pub width: u32,
    pub height: u32,
    proc: Option<Proc>,
}

impl Chrome {
    /// Starts Chromium on display `:display`, window at 0,0 of `w`x`h`, CDP on a free port,
    /// profile in `profile`, and waits until `/json/version` answers and a page target exists.
    pub fn start(display: u32, w: u32, h: u32, profile: &Path) -> Chrome {
        let mut c = Chrome {
            port: free_port(),
            display,
            profile: profile.to_owned(),
            width: w,
            height: h,
            proc: None,
        };
        c.restart();
        c
    }

    /// (Re)starts Chromium with the same port and profile (as a supervisor would).
    pub fn restart(&mut self) {
        self.proc = None;
        let mut cmd = Command::new("chromium");
        cmd.env("DISPLAY", format!(":{}", self.display))
            .args([
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--password-store=basic",
                "--disable-features=Translate,MediaRouter",
                "--disable-session-crashed-bubble",
                "--hide-crash-restore-bubble",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--remote-debugging-port={}", self.port))
            .arg(format!("--user-data-dir={}", self.profile.display()))
            .arg("--window-position=0,0")
            .arg(format!("--window-size={},{}", self.width, self.height))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.proc = Some(Proc::spawn(cmd));
        let port = self.port;
        wait_for(Duration::from_secs(60), "chromium CDP endpoint", || {
            http_get(port, "/json/list")
                .ok()
                .filter(|(st, body)| *st == 200 && body.contains("\"type\": \"page\""))
        });
    }

    /// Kills Chromium (SIGKILL to its process group) and waits until the port is closed.
    pub fn kill(&mut self) {
        self.proc = None;
        let port = self.port;
        wait_for(Duration::from_secs(20), "CDP port to close", || {
            (!zigral_tests::tcp_open(port)).then_some(())
        });
    }

    /// PID of the browser process.
    pub fn pid(&self) -> Option<i32> {
        self.proc.as_ref().map(Proc::pid)
    }
}

type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A parsed test HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
}

/// A test HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// 200 text/html.
    pub fn html(body: impl Into<String>) -> Response {
        Response {
            status: 200,
            headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
            body: body.into().into_bytes(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, k: &str, v: &str) -> Response {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// A tiny threaded HTTP/1.1 server on 127.0.0.1 serving fixed pages (path → body) plus an
/// optional dynamic handler.
#[derive(Clone)]
pub struct PageServer {
    pub port: u16,
    pages: Arc<Mutex<HashMap<String, Response>>>,
    handler: Arc<Mutex<Option<Handler>>>,
}

impl std::fmt::Debug for PageServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageServer")
            .field("port", &self.port)
            .finish()
    }
}

impl PageServer {
    /// Starts serving on a free port (the thread lives for the rest of the test process).
    pub fn start() -> PageServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind page server");
        let port = l.local_addr().expect("addr").port();
        let s = PageServer {
            port,
            pages: Arc::default(),
            handler: Arc::default(),
        };
        let s2 = s.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let s3 = s2.clone();
                std::thread::spawn(move || {
                    let _ = s3.serve(conn);
                });
            }
        });
        s
    }

    /// Serves `resp` at `path`.
    pub fn page(&self, path: &str, resp: Response) {
        if let Ok(mut p) = self.pages.lock() {
            p.insert(path.to_owned(), resp);
        }
    }

    /// Serves every other path with `f`.
    pub fn handler(&self, f: impl Fn(&Request) -> Response + Send + Sync + 'static) {
        if let Ok(mut h) = self.handler.lock() {
            *h = Some(Arc::new(f));
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn serve(&self, conn: TcpStream) -> std::io::Result<()> {
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut rd = BufReader::new(conn.try_clone()?);
        let mut w = conn;
        loop {
            let mut line = String::new();
            if rd.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_owned();
            let path = parts.next().unwrap_or("/").to_owned();
            let mut headers = HashMap::new();
            loop {
                let mut h = String::new();
                if rd.read_line(&mut h)? == 0 {
                    return Ok(());
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            rd.read_exact(&mut body)?;
            let req = Request {
                method,
                path: path.clone(),
                headers,
            };
            let key = path.split('?').next().unwrap_or_default().to_owned();
            let fixed = self.pages.lock().ok().and_then(|p| p.get(&key).cloned());
            let resp = match fixed {
                Some(r) => r,
                None => match self.handler.lock().ok().and_then(|h| h.clone()) {
                    Some(h) => h(&req),
                    None => Response {
                        status: 404,
                        headers: vec![],
                        body: b"not found".to_vec(),
                    },
                },
            };
            let mut head = format!(
                "HTTP/1.1 {} X\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
                resp.status,
                resp.body.len()
            );
            for (k, v) in &resp.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            w.write_all(head.as_bytes())?;
            w.write_all(&resp.body)?;
            w.flush()?;
        }
    }
}

/// Polls `f` every 50 ms until it returns Some, for at most 15 s (panics naming `what`).
pub async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
