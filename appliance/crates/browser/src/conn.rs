//! The CDP connection owner: probes Chrome's DevTools endpoint, (re)connects when Chrome was
//! restarted, runs chromiumoxide's handler task, and hands out pages (tabs) to the operations.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::target::TargetId;
use chromiumoxide::error::CdpError;
use chromiumoxide::handler::HandlerConfig;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, MutexGuard};
use tokio::task::JoinHandle;

use crate::raw::{Raw, map_err};
use crate::{BrowserError, Result};

/// How to reach one desktop's Chrome.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// Chrome's `--remote-debugging-port` on 127.0.0.1.
    pub cdp_port: u16,
    /// Where downloads go (`<state>/desktops/N/downloads`); created on connect.
    /// `None` leaves Chrome's own download behaviour alone.
    pub downloads_dir: Option<PathBuf>,
    /// How long a call waits for Chrome to come back before failing with `Unavailable`.
    pub reconnect_timeout: Duration,
    /// Upper bound for one operation (navigation and load waits included).
    pub op_timeout: Duration,
}

impl BrowserOptions {
    /// Defaults for a Chrome listening on `cdp_port`.
    pub fn new(cdp_port: u16) -> BrowserOptions {
        BrowserOptions {
            cdp_port,
            downloads_dir: None,
            reconnect_timeout: Duration::from_secs(5),
            op_timeout: Duration::from_secs(30),
        }
    }
}

/// The owner of one Chrome's CDP connection. Cheap to clone (shared); operations are
/// serialised by an internal lock, so there is exactly one CDP client per Chrome.
#[derive(Clone)]
pub struct Browser {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("cdp_port", &self.inner.opts.cdp_port)
            .finish()
    }
}

pub(crate) struct Inner {
    pub(crate) opts: BrowserOptions,
    state: Mutex<State>,
    /// The live navigation guard, if any (see [`crate::NavGuard`]).
    pub(crate) guard: crate::guard::GuardSlot,
}

#[derive(Default)]
pub(crate) struct State {
    conn: Option<Conn>,
    /// The tab the agent works in (a CDP target id).
    pub(crate) active: Option<String>,
}

struct Conn {
    browser: chromiumoxide::Browser,
    ws_url: String,
    dead: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A locked, connected browser: what operations work with.
pub(crate) struct Session<'a> {
    pub(crate) st: MutexGuard<'a, State>,
    pub(crate) opts: &'a BrowserOptions,
}

/// One page target as Chrome lists it.
#[derive(Debug, Clone)]
pub(crate) struct TargetEntry {
    pub id: String,
    pub url: String,
    pub title: String,
}

impl Browser {
    /// A browser owner for the Chrome described by `opts`. Does not connect yet: the first
    /// operation does (so creating it never fails, even while Chrome is still starting).
    pub fn new(opts: BrowserOptions) -> Browser {
        Browser {
            inner: Arc::new(Inner {
                opts,
                state: Mutex::new(State::default()),
                guard: Default::default(),
            }),
        }
    }

    /// The options this owner was created with.
    pub fn options(&self) -> &BrowserOptions {
        &self.inner.opts
    }

    /// Connects now (or checks the existing connection); returns Chrome's product string.
    pub async fn connect(&self) -> Result<String> {
        let s = self.session().await?;
        let v = s.browser_cmd("Browser.getVersion", json!({})).await?;
        Ok(v["product"].as_str().unwrap_or_default().to_owned())
    }

    /// Locks the owner and makes sure it holds a live connection to the Chrome that is
    /// listening now (reconnecting after a restart, waiting up to `reconnect_timeout`).
    pub(crate) async fn session(&self) -> Result<Session<'_>> {
        let opts = &self.inner.opts;
        let mut st = self.inner.state.lock().await;
        let start = Instant::now();
        let mut delay = Duration::from_millis(50);
        let ws_url = loop {
            match probe(opts.cdp_port).await {
                Ok(u) => break u,
                Err(e) => {
                    st.conn = None;
                    if start.elapsed() + delay > opts.reconnect_timeout {
                        return Err(BrowserError::Unavailable(format!(
                            "Chrome's DevTools endpoint 127.0.0.1:{} is not answering ({e}); \
                             it may be restarting, retry shortly",
                            opts.cdp_port
                        )));
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(1000));
                }
            }
        };
        let fresh = match &st.conn {
            Some(c) => c.ws_url != ws_url || c.dead.load(Ordering::Acquire),
            None => true,
        };
        if fresh {
            if st.conn.is_some() {
                tracing::info!(
                    port = opts.cdp_port,
                    "Chrome restarted; reconnecting over CDP"
                );
            }
            st.conn = None;
            st.active = None;
            let conn = connect_ws(&ws_url).await?;
            st.conn = Some(conn);
            let s = Session { st, opts };
            s.after_connect().await?;
            return Ok(s);
        }
        Ok(Session { st, opts })
    }
}

/// GET /json/version on Chrome's DevTools HTTP server; returns the browser WebSocket URL.
pub(crate) async fn probe(port: u16) -> std::result::Result<String, String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let req = format!(
            "GET /json/version HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        // Chrome keeps the connection open: read until Content-Length bytes of body arrived.
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        let body = loop {
            let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed before the reply was complete".to_owned());
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .ok_or("no Content-Length")?;
                if body.len() >= len {
                    break body.to_owned();
                }
            }
        };
        let v: Value = serde_json::from_str(body.trim()).map_err(|e| e.to_string())?;
        v["webSocketDebuggerUrl"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no webSocketDebuggerUrl".to_owned())
    };
    match tokio::time::timeout(Duration::from_secs(3), fut).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    }
}

async fn connect_ws(ws_url: &str) -> Result<Conn> {
    let config = HandlerConfig {
        request_timeout: Duration::from_secs(30),
        ..HandlerConfig::default()
    };
    let (browser, mut handler) = chromiumoxide::Browser::connect_with_config(ws_url, config)
        .await
        .map_err(|e| BrowserError::Unavailable(format!("CDP connect to {ws_url} failed: {e}")))?;
    let dead = Arc::new(AtomicBool::new(false));
    let flag = dead.clone();
    let task = tokio::spawn(async move {
        while let Some(ev) = handler.next().await {
            match ev {
                Ok(()) => {}
                // Chromium 156 sends events chromiumoxide 0.9.1 cannot parse: skip them and
                // keep polling (stopping here would hang every later call).
                Err(CdpError::InvalidMessage(m, e)) => {
                    tracing::debug!(error = %e, len = m.len(), "CDP message not understood; skipped");
                }
                Err(CdpError::Serde(e)) => {
                    tracing::debug!(error = %e, "CDP message not understood; skipped");
                }
                // Anything else is the WebSocket itself failing: Chrome went away.
                Err(e) => {
                    tracing::warn!(error = %e, "CDP connection lost");
                    break;
                }
            }
        }
        flag.store(true, Ordering::Release);
    });
    Ok(Conn {
        browser,
        ws_url: ws_url.to_owned(),
        dead,
        task,
    })
}

impl Session<'_> {
    fn browser(&self) -> Result<&chromiumoxide::Browser> {
        match &self.st.conn {
            Some(c) => Ok(&c.browser),
            None => Err(BrowserError::Unavailable("not connected".into())),
        }
    }

    async fn after_connect(&self) -> Result<()> {
        if let Some(dir) = &self.opts.downloads_dir {
            std::fs::create_dir_all(dir)?;
            self.browser_cmd(
                "Browser.setDownloadBehavior",
                json!({"behavior": "allow", "downloadPath": dir, "eventsEnabled": false}),
            )
            .await?;
        }
        Ok(())
    }

    /// Runs a browser-level CDP command (no target session).
    pub(crate) async fn browser_cmd(&self, method: &'static str, params: Value) -> Result<Value> {
        let b = self.browser()?;
        let fut = b.execute(Raw::new(method, params));
        match tokio::time::timeout(self.opts.op_timeout, fut).await {
            Ok(Ok(r)) => Ok(r.result),
            Ok(Err(e)) => Err(self.note(map_err(e))),
            Err(_) => Err(BrowserError::Timeout(format!("{method} took too long"))),
        }
    }

    /// Runs a CDP command in `page`'s session.
    pub(crate) async fn page_cmd(
        &self,
        page: &Page,
        method: &'static str,
        params: Value,
    ) -> Result<Value> {
        let fut = page.execute(Raw::new(method, params));
        match tokio::time::timeout(self.opts.op_timeout, fut).await {
            Ok(Ok(r)) => Ok(r.result),
            Ok(Err(e)) => Err(self.note(map_err(e))),
            Err(_) => Err(BrowserError::Timeout(format!("{method} took too long"))),
        }
    }

    fn note(&self, e: BrowserError) -> BrowserError {
        if crate::raw::is_connection_error(&e)
            && let Some(c) = &self.st.conn
        {
            c.dead.store(true, Ordering::Release);
        }
        e
    }

    /// The page targets (tabs), in Chrome's order.
    pub(crate) async fn targets(&self) -> Result<Vec<TargetEntry>> {
        let v = self.browser_cmd("Target.getTargets", json!({})).await?;
        let mut out = Vec::new();
        for t in v["targetInfos"].as_array().into_iter().flatten() {
            if t["type"] != "page" {
                continue;
            }
            let url = t["url"].as_str().unwrap_or_default();
            if url.starts_with("devtools://") {
                continue;
            }
            out.push(TargetEntry {
                id: t["targetId"].as_str().unwrap_or_default().to_owned(),
                url: url.to_owned(),
                title: t["title"].as_str().unwrap_or_default().to_owned(),
            });
        }
        // Chrome lists the most recently created/used first; keep a stable order by id
        // would lose that, so keep Chrome's order.
        Ok(out)
    }

    /// Waits (up to 5 s) until Chrome no longer lists any of the closed targets `ids`:
    /// `Target.closeTarget` answers before the tab is gone.
    pub(crate) async fn wait_gone(&self, ids: &[String]) -> Result<()> {
        let start = Instant::now();
        while self.targets().await?.iter().any(|t| ids.contains(&t.id))
            && start.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The id of the agent's tab: the remembered one if it still exists, else the first.
    /// Opens an `about:blank` tab when none exists.
    pub(crate) async fn active_id(&mut self) -> Result<String> {
        let targets = self.targets().await?;
        if let Some(a) = &self.st.active
            && targets.iter().any(|t| &t.id == a)
        {
            return Ok(a.clone());
        }
        let id = match targets.first() {
            Some(t) => t.id.clone(),
            None => self.create_target("about:blank").await?,
        };
        self.st.active = Some(id.clone());
        Ok(id)
    }

    /// Opens a new tab at `url` (no load wait) and returns its target id.
    pub(crate) async fn create_target(&self, url: &str) -> Result<String> {
        let v = self
            .browser_cmd("Target.createTarget", json!({"url": url}))
            .await?;
        v["targetId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| BrowserError::Cdp("Target.createTarget returned no targetId".into()))
    }

    /// chromiumoxide's page handle for a target (waits for the handler to attach to it).
    pub(crate) async fn page(&self, id: &str) -> Result<Page> {
        let b = self.browser()?;
        let start = Instant::now();
        loop {
            match b.get_page(TargetId::from(id.to_owned())).await {
                Ok(p) => return Ok(p),
                Err(CdpError::NotFound) if start.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(CdpError::NotFound) => {
                    return Err(BrowserError::NotFound(format!("tab {id}")));
                }
                Err(e) => return Err(self.note(map_err(e))),
            }
        }
    }

    /// The active tab's page handle.
    pub(crate) async fn active_page(&mut self) -> Result<Page> {
        let id = self.active_id().await?;
        self.page(&id).await
    }

    /// Evaluates `expr` in `page` (awaiting promises) and returns its JSON value.
    pub(crate) async fn eval(&self, page: &Page, expr: &str) -> Result<Value> {
        let v = self
            .page_cmd(
                page,
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(ex) = v.get("exceptionDetails") {
            let msg = ex["exception"]["description"]
                .as_str()
                .or_else(|| ex["text"].as_str())
                .unwrap_or("exception")
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            return Err(BrowserError::Script(msg));
        }
        Ok(v["result"]["value"].clone())
    }
}
