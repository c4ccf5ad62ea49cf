//! The navigation guard: enforces a [`UrlPolicy`] on every top-level navigation of every tab,
//! however it was started — a URL typed into the omnibox, a link the page follows, a form, a
//! script, a redirect or a new tab opened by the page — not only on the URLs the API is asked
//! to open.
//!
//! How: the guard keeps its own CDP WebSocket to the browser endpoint (independent of the
//! [`Browser`]'s operation lock, so it answers paused requests while a `navigate` waits for a
//! load). It auto-attaches to every page target, existing and new (new ones wait for the
//! debugger until the guard has armed them, so even the first navigation of a tab opened with
//! `window.open` is seen), and in each enables:
//! - `Fetch` for `Document` requests at the request stage. A paused main-frame document request
//!   (the frame id is the target id) whose URL the policy refuses is answered by the guard
//!   itself with `204 No Content` before anything goes to the server, and reported as
//!   [`Stopped::Blocked`]; everything else continues untouched. A 204 answer to a navigation
//!   means "stay where you are": Chrome keeps the current document (its state, scroll position
//!   and history) and shows no error page — unlike `Fetch.failRequest`, which commits Chrome's
//!   error page (a new document and history entry). A blocked new tab stays blank. A server
//!   redirect hop to a refused URL is failed instead (`BlockedByClient`): the navigation was
//!   already under way and a CDP `Page.navigate` only returns once something commits; the
//!   tab is then returned from the error page as below. Sub-frame documents (iframes) and
//!   sub-resources are NOT filtered: the allowlist is about which sites the agent visits, and
//!   embedded third-party frames are part of allowed sites.
//! - `Page` events, for what `Fetch` cannot see (URLs that do not go through the network stack:
//!   `chrome://`, `about:` other than `about:blank`, `data:`, `file:`, `view-source:`, typed into
//!   the omnibox): a main-frame commit of a refused URL sends the tab back to its last allowed
//!   URL (or `about:blank` when it has none), reported as [`Stopped::Returned`]. An error page
//!   (`chrome-error://chromewebdata/`) is judged by the URL that failed: a network error on an
//!   allowed URL stays visible, one on a refused URL is sent back too.
//!
//! When armed (and after each re-arm) tabs already showing a refused URL are sent to
//! `about:blank`; so are tabs whose page a narrower [`NavGuard::set_policy`] refuses.
//!
//! Chrome restarts: when the guard's connection drops, it probes Chrome's DevTools endpoint
//! again (with backoff, for as long as the guard lives) and re-arms by itself; meanwhile
//! [`NavGuard::is_armed`] is false. Dropping the last [`NavGuard`] handle closes the
//! connection, which makes Chrome release all interception (nothing stays paused).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::probe;
use crate::{Browser, BrowserError, Result, UrlPolicy};

/// How a refused navigation was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// The document request was failed before it left Chrome: the server saw nothing.
    Blocked,
    /// The URL committed (it does not go through the network, e.g. `chrome://`), or a tab was
    /// already on it; the tab was sent back to its last allowed URL (or `about:blank`).
    Returned,
}

/// One refused top-level navigation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    /// The refused URL (as Chrome reported it, at most 2000 characters).
    pub url: String,
    /// The tab (CDP target id) it happened in.
    pub tab_id: String,
    /// When, Unix milliseconds.
    pub at_ms: u64,
    pub how: Stopped,
    /// Why the policy refused it (a [`crate::UrlRejection`] message).
    pub reason: String,
}

/// A running navigation guard (see the module docs). Cheap to clone: all clones share one
/// guard, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct NavGuard {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for NavGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NavGuard")
            .field("armed", &self.is_armed())
            .finish()
    }
}

/// Owns the guard task; aborting it closes the guard's CDP connection.
pub(crate) struct Handle {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    policy: watch::Sender<UrlPolicy>,
    reports: broadcast::Sender<Blocked>,
    armed: AtomicBool,
}

impl Shared {
    fn check(&self, url: &str) -> std::result::Result<(), String> {
        self.policy
            .borrow()
            .check(url)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn report(&self, url: &str, tab_id: &str, how: Stopped, reason: String) {
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        tracing::info!(
            tab = tab_id,
            host,
            ?how,
            "navigation refused by the URL policy"
        );
        let _ = self.reports.send(Blocked {
            url: url.chars().take(2000).collect(),
            tab_id: tab_id.to_owned(),
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            how,
            reason,
        });
    }
}

impl NavGuard {
    /// Replaces the policy; applies to the next navigation, and tabs whose current page the
    /// new policy refuses are sent to `about:blank` (reported as [`Stopped::Returned`]).
    pub fn set_policy(&self, policy: UrlPolicy) {
        self.handle.shared.policy.send_replace(policy);
    }

    /// The policy in force.
    pub fn policy(&self) -> UrlPolicy {
        self.handle.shared.policy.borrow().clone()
    }

    /// Refused navigations from now on. A receiver that falls more than 64 reports behind
    /// loses the oldest (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<Blocked> {
        self.handle.shared.reports.subscribe()
    }

    /// True while the guard is attached to the running Chrome. False between a Chrome restart
    /// and the guard's re-arm (it retries by itself).
    pub fn is_armed(&self) -> bool {
        self.handle.shared.armed.load(Ordering::Acquire)
    }

    /// Checks `url` against the guard's policy (what the API's own navigations do first).
    pub(crate) fn check(&self, url: &str) -> Result<()> {
        self.handle
            .shared
            .policy
            .borrow()
            .check(url)
            .map(|_| ())
            .map_err(BrowserError::UrlNotAllowed)
    }
}

impl Browser {
    /// Starts enforcing `policy` on every top-level navigation of every tab until the guard is
    /// dropped or `set_policy` changes it. Idempotent: while a guard is alive, a second call
    /// replaces its policy and returns another handle to the same guard. Returns once every
    /// open tab is armed; fails with `Unavailable` when Chrome does not answer within the
    /// browser's `reconnect_timeout`.
    ///
    /// While a guard is alive, this browser's own navigations (`navigate`, `new_tab`,
    /// `restore`) are also checked against its policy before anything is sent to Chrome.
    pub async fn guard_navigation(&self, policy: UrlPolicy) -> Result<NavGuard> {
        let mut slot = self.inner.guard.lock().await;
        if let Some(handle) = slot.upgrade() {
            handle.shared.policy.send_replace(policy);
            return Ok(NavGuard { handle });
        }
        let (policy_tx, _) = watch::channel(policy);
        let (reports, _) = broadcast::channel(64);
        let shared = Arc::new(Shared {
            policy: policy_tx,
            reports,
            armed: AtomicBool::new(false),
        });
        let opts = &self.inner.opts;
        let start = Instant::now();
        let mut delay = Duration::from_millis(50);
        let first = loop {
            match arm(&shared, opts.cdp_port, opts.op_timeout).await {
                Ok(a) => break a,
                Err(e) => {
                    if start.elapsed() + delay > opts.reconnect_timeout {
                        return Err(e);
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        };
        let task = tokio::spawn(run(shared.clone(), opts.cdp_port, opts.op_timeout, first));
        let handle = Arc::new(Handle { shared, task });
        *slot = Arc::downgrade(&handle);
        Ok(NavGuard { handle })
    }

    /// The live navigation guard of this browser, if any.
    pub async fn navigation_guard(&self) -> Option<NavGuard> {
        let slot = self.inner.guard.lock().await;
        slot.upgrade().map(|handle| NavGuard { handle })
    }

    /// Checks `url` against the live guard's policy (Ok when there is none).
    pub(crate) async fn guard_check(&self, url: &str) -> Result<()> {
        match self.navigation_guard().await {
            Some(g) => g.check(url),
            None => Ok(()),
        }
    }
}

/// The slot in [`crate::conn::Inner`] that remembers the live guard.
pub(crate) type GuardSlot = tokio::sync::Mutex<Weak<Handle>>;

/// The guard task: serves the armed connection, re-arms after it drops, forever (until
/// aborted by the last handle's drop).
async fn run(shared: Arc<Shared>, port: u16, op_timeout: Duration, first: Armed) {
    let mut armed = Some(first);
    let mut delay = Duration::from_millis(100);
    loop {
        let a = match armed.take() {
            Some(a) => a,
            None => match arm(&shared, port, op_timeout).await {
                Ok(a) => {
                    tracing::info!(port, "navigation guard re-armed");
                    delay = Duration::from_millis(100);
                    a
                }
                Err(e) => {
                    tracing::debug!(error = %e, "navigation guard cannot arm yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                    continue;
                }
            },
        };
        a.serve(&shared).await;
        shared.armed.store(false, Ordering::Release);
        tracing::warn!(
            port,
            "navigation guard lost Chrome; re-arming when it is back"
        );
    }
}

/// One CDP event.
struct Event {
    session: Option<String>,
    method: String,
    params: Value,
}

type Pending =
    Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<std::result::Result<Value, String>>>>>;

/// A minimal CDP client over one WebSocket (flattened sessions): commands with or without
/// awaiting the answer, events to a channel.
struct Cdp {
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next: AtomicU64,
    timeout: Duration,
}

impl Cdp {
    async fn connect(
        ws_url: &str,
        timeout: Duration,
    ) -> Result<(Arc<Cdp>, mpsc::UnboundedReceiver<Event>, JoinHandle<()>)> {
        let (ws, _) = tokio::time::timeout(timeout, tokio_tungstenite::connect_async(ws_url))
            .await
            .map_err(|_| BrowserError::Unavailable("CDP connect timed out".into()))?
            .map_err(|e| BrowserError::Unavailable(format!("CDP connect failed: {e}")))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();
        let pend = pending.clone();
        let driver = tokio::spawn(async move {
            loop {
                tokio::select! {
                    msg = stream.next() => {
                        let text = match msg {
                            Some(Ok(Message::Text(t))) => t,
                            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                            Some(Ok(_)) => continue,
                        };
                        let Ok(mut v) = serde_json::from_str::<Value>(text.as_str()) else {
                            continue;
                        };
                        if let Some(id) = v["id"].as_u64() {
                            let tx = pend.lock().ok().and_then(|mut p| p.remove(&id));
                            if let Some(tx) = tx {
                                let r = match v.get("error") {
                                    Some(e) => Err(e["message"].as_str().unwrap_or("error").to_owned()),
                                    None => Ok(v["result"].take()),
                                };
                                let _ = tx.send(r);
                            }
                        } else if let Some(m) = v["method"].as_str() {
                            let ev = Event {
                                session: v["sessionId"].as_str().map(str::to_owned),
                                method: m.to_owned(),
                                params: v["params"].take(),
                            };
                            if ev_tx.send(ev).is_err() {
                                break;
                            }
                        }
                    }
                    cmd = out_rx.recv() => {
                        let Some(cmd) = cmd else { break };
                        if sink.send(Message::text(cmd)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // Fail every waiting call.
            if let Ok(mut p) = pend.lock() {
                p.clear();
            }
        });
        let cdp = Arc::new(Cdp {
            out,
            pending,
            next: AtomicU64::new(1),
            timeout,
        });
        Ok((cdp, ev_rx, driver))
    }

    fn message(&self, id: u64, session: Option<&str>, method: &str, params: Value) -> String {
        let mut m = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            m["sessionId"] = json!(s);
        }
        m.to_string()
    }

    /// Sends a command and awaits its result.
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        self.out
            .send(self.message(id, session, method, params))
            .map_err(|_| BrowserError::Unavailable("guard connection closed".into()))?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(BrowserError::Cdp(format!("{method}: {e}"))),
            Ok(Err(_)) => Err(BrowserError::Unavailable("guard connection closed".into())),
            Err(_) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.remove(&id);
                }
                Err(BrowserError::Timeout(format!("{method} took too long")))
            }
        }
    }

    /// Sends a command without waiting (its answer is dropped).
    fn send(&self, session: Option<&str>, method: &str, params: Value) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let _ = self.out.send(self.message(id, session, method, params));
    }
}

/// What the guard knows of one attached tab.
struct Tab {
    target: String,
    /// The URL of the page the tab shows, when the policy allowed it.
    last_allowed: Option<String>,
    /// The last URL the guard blocked in this tab (an error page for it is not reported again).
    last_blocked: Option<String>,
}

/// An armed guard connection.
struct Armed {
    cdp: Arc<Cdp>,
    events: mpsc::UnboundedReceiver<Event>,
    driver: JoinHandle<()>,
    /// By session id.
    tabs: HashMap<String, Tab>,
    policy: watch::Receiver<UrlPolicy>,
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Connects to the Chrome listening on `port` and arms every page target.
async fn arm(shared: &Arc<Shared>, port: u16, timeout: Duration) -> Result<Armed> {
    let ws_url = probe(port).await.map_err(|e| {
        BrowserError::Unavailable(format!(
            "Chrome's DevTools endpoint 127.0.0.1:{port} is not answering ({e})"
        ))
    })?;
    let (cdp, events, driver) = Cdp::connect(&ws_url, timeout).await?;
    let mut a = Armed {
        cdp,
        events,
        driver,
        tabs: HashMap::new(),
        policy: shared.policy.subscribe(),
    };
    a.policy.mark_unchanged();
    // Existing pages are attached (events before the answer), new ones wait for us.
    a.cdp
        .call(
            None,
            "Target.setAutoAttach",
            json!({
                "autoAttach": true,
                "waitForDebuggerOnStart": true,
                "flatten": true,
                "filter": [{"type": "page", "exclude": false}],
            }),
        )
        .await?;
    // Chrome sends the attach events of existing pages before its answer, and the driver
    // forwards messages in order: they are all queued now.
    a.drain(shared).await;
    // Attach explicitly to any page auto-attach did not report (its events, too, come before
    // the answer). A page that cannot be attached (gone meanwhile) is skipped.
    let v = a.cdp.call(None, "Target.getTargets", json!({})).await?;
    for t in v["targetInfos"].as_array().into_iter().flatten() {
        let id = t["targetId"].as_str().unwrap_or_default();
        if t["type"] != "page" || a.tabs.values().any(|tab| tab.target == id) {
            continue;
        }
        let attached = a
            .cdp
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": id, "flatten": true}),
            )
            .await;
        if let Err(e) = attached {
            tracing::debug!(error = %e, "navigation guard could not attach to a page");
        }
        a.drain(shared).await;
    }
    shared.armed.store(true, Ordering::Release);
    Ok(a)
}

impl Armed {
    /// Handles the events already received.
    async fn drain(&mut self, shared: &Shared) {
        while let Ok(ev) = self.events.try_recv() {
            self.on_event(shared, ev).await;
        }
    }

    /// Handles events until the connection drops.
    async fn serve(mut self, shared: &Arc<Shared>) {
        loop {
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(ev) => self.on_event(shared, ev).await,
                    None => return,
                },
                changed = self.policy.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.sweep(shared);
                }
            }
        }
    }

    /// After a policy change: tabs whose page is now refused go to `about:blank`.
    fn sweep(&mut self, shared: &Shared) {
        for (session, tab) in &mut self.tabs {
            let Some(url) = tab.last_allowed.clone() else {
                continue;
            };
            if let Err(reason) = shared.check(&url) {
                tab.last_allowed = None;
                self.cdp.send(
                    Some(session),
                    "Page.navigate",
                    json!({"url": "about:blank"}),
                );
                shared.report(&url, &tab.target, Stopped::Returned, reason);
            }
        }
    }

    async fn on_event(&mut self, shared: &Shared, ev: Event) {
        match ev.method.as_str() {
            "Target.attachedToTarget" => self.on_attached(shared, &ev.params).await,
            "Target.detachedFromTarget" => {
                if let Some(s) = ev.params["sessionId"].as_str() {
                    self.tabs.remove(s);
                }
            }
            "Fetch.requestPaused" => {
                if let Some(s) = ev.session.as_deref() {
                    self.on_paused(shared, s, &ev.params);
                }
            }
            "Page.frameNavigated" => {
                if let Some(s) = ev.session.as_deref() {
                    self.on_navigated(shared, s, &ev.params["frame"]);
                }
            }
            "Page.navigatedWithinDocument" => {
                if let (Some(s), Some(url)) = (ev.session.as_deref(), ev.params["url"].as_str())
                    && let Some(tab) = self.tabs.get_mut(s)
                    && ev.params["frameId"] == tab.target.as_str()
                    && shared.check(url).is_ok()
                {
                    tab.last_allowed = Some(url.to_owned());
                }
            }
            _ => {}
        }
    }

    async fn on_attached(&mut self, shared: &Shared, p: &Value) {
        let Some(session) = p["sessionId"].as_str() else {
            return;
        };
        let info = &p["targetInfo"];
        let waiting = p["waitingForDebugger"].as_bool().unwrap_or(false);
        if info["type"] != "page" {
            if waiting {
                self.cdp
                    .send(Some(session), "Runtime.runIfWaitingForDebugger", json!({}));
            }
            self.cdp.send(
                None,
                "Target.detachFromTarget",
                json!({"sessionId": session}),
            );
            return;
        }
        let target = info["targetId"].as_str().unwrap_or_default().to_owned();
        let url = info["url"].as_str().unwrap_or_default().to_owned();
        let armed = async {
            self.cdp
                .call(
                    Some(session),
                    "Fetch.enable",
                    json!({"patterns": [{
                        "urlPattern": "*",
                        "resourceType": "Document",
                        "requestStage": "Request",
                    }]}),
                )
                .await?;
            self.cdp.call(Some(session), "Page.enable", json!({})).await
        }
        .await;
        if waiting {
            self.cdp
                .send(Some(session), "Runtime.runIfWaitingForDebugger", json!({}));
        }
        if let Err(e) = armed {
            // The target went away meanwhile (or cannot be armed): nothing to guard.
            tracing::debug!(error = %e, "navigation guard could not arm a tab");
            return;
        }
        let allowed = shared.check(&url);
        let mut tab = Tab {
            target: target.clone(),
            last_allowed: allowed.is_ok().then(|| url.clone()),
            last_blocked: None,
        };
        if let Err(reason) = allowed
            && !url.is_empty()
            && !is_error_page(&url)
        {
            // Already on a refused page (e.g. a tab restored before the guard re-armed).
            self.cdp.send(
                Some(session),
                "Page.navigate",
                json!({"url": "about:blank"}),
            );
            shared.report(&url, &target, Stopped::Returned, reason);
        } else if is_error_page(&url) {
            tab.last_blocked = Some(url);
        }
        self.tabs.insert(session.to_owned(), tab);
    }

    fn on_paused(&mut self, shared: &Shared, session: &str, p: &Value) {
        let id = p["requestId"].clone();
        let url = p["request"]["url"].as_str().unwrap_or_default();
        let tab = self.tabs.get_mut(session);
        if let Some(tab) = tab
            && p["resourceType"] == "Document"
            && p["frameId"] == tab.target.as_str()
            && let Err(reason) = shared.check(url)
        {
            if p.get("redirectedRequestId").is_some_and(|v| !v.is_null()) {
                // A server redirect: the navigation was under way already (a `Page.navigate`
                // waits for a commit), so let it fail; its error page is returned from.
                self.cdp.send(
                    Some(session),
                    "Fetch.failRequest",
                    json!({"requestId": id, "errorReason": "BlockedByClient"}),
                );
            } else {
                self.cdp.send(
                    Some(session),
                    "Fetch.fulfillRequest",
                    json!({"requestId": id, "responseCode": 204, "responseHeaders": [], "body": ""}),
                );
            }
            tab.last_blocked = Some(url.to_owned());
            shared.report(url, &tab.target, Stopped::Blocked, reason);
            return;
        }
        self.cdp.send(
            Some(session),
            "Fetch.continueRequest",
            json!({"requestId": id}),
        );
    }

    fn on_navigated(&mut self, shared: &Shared, session: &str, frame: &Value) {
        if frame.get("parentId").is_some_and(|v| !v.is_null()) {
            return;
        }
        let Some(tab) = self.tabs.get_mut(session) else {
            return;
        };
        let url = format!(
            "{}{}",
            frame["url"].as_str().unwrap_or_default(),
            frame["urlFragment"].as_str().unwrap_or_default()
        );
        let unreachable = frame["unreachableUrl"].as_str();
        // An error page stands for the URL that failed: judge that one. A genuine network
        // error on an allowed URL stays visible; the page of a request we blocked does not.
        let (judged, ours) = match unreachable {
            Some(u) if is_error_page(&url) => {
                (u.to_owned(), tab.last_blocked.as_deref() == Some(u))
            }
            _ => (url.clone(), false),
        };
        match shared.check(&judged) {
            Ok(()) => {
                if !is_error_page(&url) {
                    tab.last_allowed = Some(url);
                }
            }
            Err(reason) => {
                let back = tab
                    .last_allowed
                    .clone()
                    .filter(|u| shared.check(u).is_ok())
                    .unwrap_or_else(|| "about:blank".to_owned());
                self.cdp
                    .send(Some(session), "Page.navigate", json!({"url": back}));
                if !ours {
                    shared.report(&judged, &tab.target, Stopped::Returned, reason);
                }
            }
        }
    }
}

fn is_error_page(url: &str) -> bool {
    url.starts_with("chrome-error:")
}
