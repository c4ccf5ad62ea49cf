//! Page-level operations on the agent's tab: navigation with load waits, tabs, URL/title, the
//! readable page text and the compact accessibility snapshot in screen coordinates.

use std::time::{Duration, Instant};

use chromiumoxide::Page;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::conn::Session;
use crate::{Browser, BrowserError, Result, UrlPolicy};

/// One tab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TabInfo {
    /// CDP target id (use it to switch to or close the tab).
    pub id: String,
    pub url: String,
    pub title: String,
    /// True for the tab the agent's browser actions apply to.
    pub active: bool,
}

/// The readable text of a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageText {
    pub url: String,
    pub title: String,
    /// `innerText` of the main content (`main`, `[role=main]`, `article`, else `body`).
    pub text: String,
    /// True when `text` was cut at the requested maximum.
    pub truncated: bool,
}

/// A rectangle in screen pixels (the X display's coordinates).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

/// One element of the accessibility snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct A11yNode {
    /// ARIA role (explicit or implicit).
    pub role: String,
    /// Accessible name (label, aria-label, alt, text...), at most 120 characters.
    pub name: String,
    /// Current value of form fields (never for password fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<bool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub focused: bool,
    /// Heading level for headings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    /// Bounding box on the screen.
    pub rect: Rect,
    /// The point to click (centre of the visible part), on the screen.
    pub center: (i32, i32),
    /// False when the element is scrolled out of the viewport (scroll before clicking).
    pub in_viewport: bool,
}

/// A compact accessibility snapshot of the active tab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct A11ySnapshot {
    pub url: String,
    pub title: String,
    /// Where the page's viewport is on the screen.
    pub viewport: Rect,
    /// CSS-to-screen pixel ratio (page zoom).
    pub scale: f64,
    pub nodes: Vec<A11yNode>,
    /// True when more than the requested maximum number of nodes matched.
    pub truncated: bool,
}

const NAV_MARK: &str = "window.__zigralNavMark = true; true";
const NAV_STATE: &str =
    "JSON.stringify([document.readyState, window.__zigralNavMark === true, location.href])";

impl Browser {
    /// Opens `url` in the active tab after checking it against `policy` (and the live
    /// [`crate::NavGuard`]'s policy, if any), and waits for load. Returns the tab afterwards.
    pub async fn navigate(&self, url: &str, policy: &UrlPolicy) -> Result<TabInfo> {
        let url = policy.check(url)?;
        self.guard_check(url.as_str()).await?;
        let mut s = self.session().await?;
        let page = s.active_page().await?;
        let v = s
            .page_cmd(&page, "Page.navigate", json!({"url": url.as_str()}))
            .await?;
        if let Some(err) = v["errorText"].as_str().filter(|e| !e.is_empty()) {
            return Err(BrowserError::Navigation(format!("{url}: {err}")));
        }
        wait_loaded(&s, &page, None, s.opts.op_timeout).await?;
        current(&mut s).await
    }

    /// Goes back one entry in the active tab's history and waits for load.
    pub async fn back(&self) -> Result<TabInfo> {
        self.history(-1).await
    }

    /// Goes forward one entry in the active tab's history and waits for load.
    pub async fn forward(&self) -> Result<TabInfo> {
        self.history(1).await
    }

    async fn history(&self, delta: i64) -> Result<TabInfo> {
        let mut s = self.session().await?;
        let page = s.active_page().await?;
        let h = s
            .page_cmd(&page, "Page.getNavigationHistory", json!({}))
            .await?;
        let idx = h["currentIndex"].as_i64().unwrap_or(0) + delta;
        let entries = h["entries"].as_array().cloned().unwrap_or_default();
        let Some(entry) = usize::try_from(idx).ok().and_then(|i| entries.get(i)) else {
            return Err(BrowserError::Invalid(format!(
                "no {} page in this tab's history",
                if delta < 0 { "previous" } else { "next" }
            )));
        };
        let expect = entry["url"].as_str().unwrap_or_default().to_owned();
        // An entry from before the guard: the guard would keep the page where it is.
        self.guard_check(&expect).await?;
        s.eval(&page, NAV_MARK).await?;
        s.page_cmd(
            &page,
            "Page.navigateToHistoryEntry",
            json!({"entryId": entry["id"]}),
        )
        .await?;
        wait_loaded(&s, &page, Some(&expect), s.opts.op_timeout).await?;
        current(&mut s).await
    }

    /// Reloads the active tab and waits for load.
    pub async fn reload(&self) -> Result<TabInfo> {
        let mut s = self.session().await?;
        let page = s.active_page().await?;
        s.eval(&page, NAV_MARK).await?;
        s.page_cmd(&page, "Page.reload", json!({})).await?;
        wait_loaded(&s, &page, None, s.opts.op_timeout).await?;
        current(&mut s).await
    }

    /// Waits until the active tab's document has finished loading (`readyState` complete).
    pub async fn wait_for_load(&self, timeout: Duration) -> Result<TabInfo> {
        let mut s = self.session().await?;
        let page = s.active_page().await?;
        let start = Instant::now();
        loop {
            if let Ok(v) = s.eval(&page, "document.readyState").await
                && v == "complete"
            {
                break;
            }
            if start.elapsed() > timeout {
                return Err(BrowserError::Timeout("page did not finish loading".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        current(&mut s).await
    }

    /// The active tab (URL and title).
    pub async fn current(&self) -> Result<TabInfo> {
        let mut s = self.session().await?;
        current(&mut s).await
    }

    /// All tabs.
    pub async fn tabs(&self) -> Result<Vec<TabInfo>> {
        let mut s = self.session().await?;
        let active = s.active_id().await?;
        Ok(s.targets()
            .await?
            .into_iter()
            .map(|t| TabInfo {
                active: t.id == active,
                id: t.id,
                url: t.url,
                title: t.title,
            })
            .collect())
    }

    /// Opens a new tab (at `url`, checked against `policy` and the live guard's, or
    /// `about:blank`), makes it the
    /// active tab, brings it to the front and waits for load.
    pub async fn new_tab(&self, url: Option<&str>, policy: &UrlPolicy) -> Result<TabInfo> {
        let url = match url {
            Some(u) => Some(policy.check(u)?),
            None => None,
        };
        if let Some(u) = &url {
            self.guard_check(u.as_str()).await?;
        }
        let mut s = self.session().await?;
        let id = s.create_target("about:blank").await?;
        s.st.active = Some(id.clone());
        s.browser_cmd("Target.activateTarget", json!({"targetId": id}))
            .await?;
        let page = s.page(&id).await?;
        if let Some(url) = url {
            let v = s
                .page_cmd(&page, "Page.navigate", json!({"url": url.as_str()}))
                .await?;
            if let Some(err) = v["errorText"].as_str().filter(|e| !e.is_empty()) {
                return Err(BrowserError::Navigation(format!("{url}: {err}")));
            }
            wait_loaded(&s, &page, None, s.opts.op_timeout).await?;
        }
        current(&mut s).await
    }

    /// Makes tab `id` the active tab and brings it to the front.
    pub async fn switch_tab(&self, id: &str) -> Result<TabInfo> {
        let mut s = self.session().await?;
        let targets = s.targets().await?;
        if !targets.iter().any(|t| t.id == id) {
            return Err(BrowserError::NotFound(format!("no tab with id {id:?}")));
        }
        s.browser_cmd("Target.activateTarget", json!({"targetId": id}))
            .await?;
        s.st.active = Some(id.to_owned());
        current(&mut s).await
    }

    /// Closes tab `id`. Closing the last tab first opens an `about:blank` tab, so Chrome keeps
    /// a window. Returns the remaining tabs.
    pub async fn close_tab(&self, id: &str) -> Result<Vec<TabInfo>> {
        {
            let mut s = self.session().await?;
            let targets = s.targets().await?;
            if !targets.iter().any(|t| t.id == id) {
                return Err(BrowserError::NotFound(format!("no tab with id {id:?}")));
            }
            if targets.len() == 1 {
                let nid = s.create_target("about:blank").await?;
                s.st.active = Some(nid);
            }
            s.browser_cmd("Target.closeTarget", json!({"targetId": id}))
                .await?;
            if s.st.active.as_deref() == Some(id) {
                s.st.active = None;
            }
            s.wait_gone(&[id.to_owned()]).await?;
            let active = s.active_id().await?;
            s.browser_cmd("Target.activateTarget", json!({"targetId": active}))
                .await?;
        }
        self.tabs().await
    }

    /// The readable text of the active tab, at most `max_chars` characters.
    pub async fn page_text(&self, max_chars: usize) -> Result<PageText> {
        let mut s = self.session().await?;
        let page = s.active_page().await?;
        let v = s.eval(&page, PAGE_TEXT_JS).await?;
        let text = v["text"].as_str().unwrap_or_default();
        let truncated = text.chars().count() > max_chars;
        Ok(PageText {
            url: v["url"].as_str().unwrap_or_default().to_owned(),
            title: v["title"].as_str().unwrap_or_default().to_owned(),
            text: text.chars().take(max_chars).collect(),
            truncated,
        })
    }

    /// A compact accessibility snapshot of the active tab: interactive elements, headings,
    /// images and landmarks with their roles, names and screen boxes (at most `max_nodes`).
    pub async fn a11y_snapshot(&self, max_nodes: usize) -> Result<A11ySnapshot> {
        let mut s = self.session().await?;
        let page = s.active_page().await?;
        let expr = format!("({})({max_nodes})", a11y_js());
        let v = s.eval(&page, &expr).await?;
        serde_json::from_value(v)
            .map_err(|e| BrowserError::Script(format!("unexpected snapshot shape: {e}")))
    }

    /// Evaluates a JavaScript expression in the active tab and returns its JSON value.
    /// (Used by tests and internal tools; not exposed as an agent action.)
    pub async fn evaluate(&self, expr: &str) -> Result<Value> {
        let mut s = self.session().await?;
        let page = s.active_page().await?;
        s.eval(&page, expr).await
    }

    /// A CDP screenshot of the active tab's viewport (JPEG at `quality`). Only for comparison:
    /// agents get screenshots from the X display, which is several times faster.
    pub async fn cdp_screenshot_jpeg(&self, quality: u8) -> Result<Vec<u8>> {
        use base64::Engine;
        let mut s = self.session().await?;
        let page = s.active_page().await?;
        let v = s
            .page_cmd(
                &page,
                "Page.captureScreenshot",
                json!({"format": "jpeg", "quality": quality}),
            )
            .await?;
        base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().unwrap_or_default())
            .map_err(|e| BrowserError::Cdp(format!("bad screenshot data: {e}")))
    }

    /// Where the active tab's viewport is on the screen, and its CSS-to-screen scale.
    pub async fn viewport(&self) -> Result<(Rect, f64)> {
        let v = self.evaluate(&format!("({VIEWPORT_JS})()")).await?;
        let r: Rect = serde_json::from_value(v["viewport"].clone())
            .map_err(|e| BrowserError::Script(e.to_string()))?;
        Ok((r, v["scale"].as_f64().unwrap_or(1.0)))
    }
}

/// The active tab's info.
async fn current(s: &mut Session<'_>) -> Result<TabInfo> {
    let id = s.active_id().await?;
    let t = s
        .targets()
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| BrowserError::NotFound(format!("tab {id}")))?;
    // Target info can lag a just-finished load: ask the page itself.
    let page = s.page(&id).await?;
    let (url, title) = match s
        .eval(&page, "JSON.stringify([location.href, document.title])")
        .await
    {
        Ok(Value::String(j)) => {
            serde_json::from_str::<(String, String)>(&j).unwrap_or((t.url, t.title))
        }
        _ => (t.url, t.title),
    };
    Ok(TabInfo {
        id,
        url,
        title,
        active: true,
    })
}

/// Waits until the document in `page` is a new one (or at `expect` URL) and fully loaded.
pub(crate) async fn wait_loaded(
    s: &Session<'_>,
    page: &Page,
    expect: Option<&str>,
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    loop {
        // Evaluation fails while the old context is torn down: just poll again.
        if let Ok(Value::String(j)) = s.eval(page, NAV_STATE).await
            && let Ok((state, marked, href)) = serde_json::from_str::<(String, bool, String)>(&j)
            && state == "complete"
            && (!marked || expect.is_some_and(|e| e == href))
        {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(BrowserError::Timeout("page did not finish loading".into()));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

const PAGE_TEXT_JS: &str = r#"(() => {
  const el = document.querySelector('main, [role=main], article') || document.body;
  return { url: location.href, title: document.title, text: el ? el.innerText : '' };
})()"#;

/// Viewport origin on the screen: window position + (outer - inner) size. Without a window
/// manager (Xvfb) Chrome's window has no side borders; the top offset is the tab strip and
/// toolbar. innerWidth/innerHeight are CSS pixels: multiply by devicePixelRatio (page zoom).
const VIEWPORT_JS: &str = r#"() => {
  const k = window.devicePixelRatio || 1;
  const side = Math.max(0, (window.outerWidth - window.innerWidth * k) / 2);
  const x = window.screenX + side;
  const y = window.screenY + Math.max(0, window.outerHeight - window.innerHeight * k - side);
  return { viewport: { x: Math.round(x), y: Math.round(y),
                       w: Math.round(window.innerWidth * k), h: Math.round(window.innerHeight * k) },
           scale: k };
}"#;

const A11Y_JS: &str = r#"(max) => {
  const vp = (VIEWPORT)();
  const k = vp.scale, ox = vp.viewport.x, oy = vp.viewport.y;
  const vw = window.innerWidth, vh = window.innerHeight;
  const clean = (s) => (s || '').replace(/\s+/g, ' ').trim().slice(0, 120);
  const implicit = (el) => {
    const t = el.tagName.toLowerCase();
    const type = (el.getAttribute('type') || '').toLowerCase();
    switch (t) {
      case 'a': return el.hasAttribute('href') ? 'link' : null;
      case 'button': return 'button';
      case 'select': return el.multiple || el.size > 1 ? 'listbox' : 'combobox';
      case 'textarea': return 'textbox';
      case 'summary': return 'button';
      case 'img': return el.getAttribute('alt') ? 'img' : null;
      case 'h1': case 'h2': case 'h3': case 'h4': case 'h5': case 'h6': return 'heading';
      case 'nav': return 'navigation';
      case 'main': return 'main';
      case 'form': return 'form';
      case 'dialog': return 'dialog';
      case 'canvas': return 'canvas';
      case 'option': return 'option';
      case 'input':
        if (type === 'hidden') return null;
        if (['button', 'submit', 'reset', 'image'].includes(type)) return 'button';
        if (type === 'checkbox') return 'checkbox';
        if (type === 'radio') return 'radio';
        if (type === 'range') return 'slider';
        if (type === 'number') return 'spinbutton';
        if (type === 'search') return 'searchbox';
        return 'textbox';
    }
    if (el.isContentEditable && (!el.parentElement || !el.parentElement.isContentEditable)) return 'textbox';
    if (el.hasAttribute('onclick') || (el.hasAttribute('tabindex') && el.getAttribute('tabindex') !== '-1')) return 'generic';
    return null;
  };
  const nameOf = (el, role) => {
    const lb = el.getAttribute('aria-labelledby');
    if (lb) {
      const s = lb.split(/\s+/).map(id => { const e = document.getElementById(id); return e ? e.innerText || e.textContent : ''; }).join(' ');
      if (clean(s)) return clean(s);
    }
    const al = el.getAttribute('aria-label');
    if (al && clean(al)) return clean(al);
    if (el.labels && el.labels.length) {
      const s = Array.from(el.labels).map(l => l.innerText || l.textContent).join(' ');
      if (clean(s)) return clean(s);
    }
    const t = el.tagName.toLowerCase();
    if (t === 'img') return clean(el.getAttribute('alt'));
    if (t === 'input') {
      const type = (el.getAttribute('type') || '').toLowerCase();
      if (['button', 'submit', 'reset'].includes(type)) return clean(el.value || type);
      if (type === 'image') return clean(el.getAttribute('alt'));
      return clean(el.getAttribute('placeholder') || el.getAttribute('title') || el.name);
    }
    if (t === 'textarea' || t === 'select') return clean(el.getAttribute('placeholder') || el.getAttribute('title') || el.name);
    if (['navigation', 'main', 'form', 'canvas', 'dialog'].includes(role)) return clean(el.getAttribute('title') || el.id);
    return clean(el.innerText || el.textContent || el.getAttribute('title'));
  };
  const out = [];
  let truncated = false;
  const visit = (root) => {
    const w = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT);
    for (let el = w.currentNode; el; el = w.nextNode()) {
      if (el.nodeType !== 1) continue;
      if (el.shadowRoot) visit(el.shadowRoot);
      const role = el.getAttribute('role') || implicit(el);
      if (!role || role === 'presentation' || role === 'none') continue;
      if (el.getAttribute('aria-hidden') === 'true') continue;
      const r = el.getBoundingClientRect();
      if (r.width <= 0 || r.height <= 0) continue;
      const cs = getComputedStyle(el);
      if (cs.visibility === 'hidden' || cs.display === 'none' || cs.opacity === '0') continue;
      if (out.length >= max) { truncated = true; return; }
      const t = el.tagName.toLowerCase();
      const type = (el.getAttribute('type') || '').toLowerCase();
      const n = { role, name: nameOf(el, role) };
      if ((t === 'input' && !['checkbox', 'radio', 'button', 'submit', 'reset', 'image', 'password', 'file'].includes(type)) || t === 'textarea' || t === 'select') {
        n.value = String(el.value).slice(0, 200);
      }
      if (type === 'checkbox' || type === 'radio') n.checked = !!el.checked;
      else if (el.hasAttribute('aria-checked')) n.checked = el.getAttribute('aria-checked') === 'true';
      if (el.disabled || el.getAttribute('aria-disabled') === 'true') n.disabled = true;
      if (document.activeElement === el) n.focused = true;
      if (role === 'heading') n.level = Number(el.getAttribute('aria-level') || t.slice(1)) || undefined;
      n.rect = { x: Math.round(ox + r.left * k), y: Math.round(oy + r.top * k), w: Math.round(r.width * k), h: Math.round(r.height * k) };
      const l = Math.max(r.left, 0), tp = Math.max(r.top, 0), rr = Math.min(r.right, vw), b = Math.min(r.bottom, vh);
      n.in_viewport = rr > l && b > tp;
      const cx = n.in_viewport ? (l + rr) / 2 : r.left + r.width / 2;
      const cy = n.in_viewport ? (tp + b) / 2 : r.top + r.height / 2;
      n.center = [Math.round(ox + cx * k), Math.round(oy + cy * k)];
      out.push(n);
    }
  };
  if (document.body) visit(document.body);
  return { url: location.href, title: document.title, viewport: vp.viewport, scale: k, nodes: out, truncated };
}"#;

fn a11y_js() -> String {
    A11Y_JS.replace("(VIEWPORT)", &format!("({VIEWPORT_JS})"))
}
