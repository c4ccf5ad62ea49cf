//! What is under the pointer and what has keyboard focus in the agent's tab: the CDP-side facts
//! behind approval gates (the role and accessible name of the element a click would hit, and
//! its document's URL) and agent-blind secret typing (which editable field has focus, in which
//! document, and whether that very field still has focus later).
//!
//! [`Browser::element_at`] maps a screen point to CSS pixels with the active tab's viewport,
//! hits it with `elementFromPoint` (descending open shadow roots and same-origin frames) and
//! climbs to the nearest interactive ancestor. [`Browser::focused_field`] walks
//! `activeElement` through same-origin frames and open shadow roots and keeps a CDP remote
//! object of the field ([`FocusHandle`]); [`Browser::is_focused`] asks later, in the same CDP
//! session, whether that object is still the element the walk ends at. Focus inside a
//! cross-origin frame is invisible from the top document, so it reports no field at all:
//! callers must refuse to type then.
//!
//! Field values are never read: nothing here can carry a typed secret out of the page.

use chromiumoxide::Page;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::conn::Session;
use crate::{Browser, BrowserError, Result};

/// What is at a screen point of the active tab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElementInfo {
    /// ARIA role: the explicit `role` attribute (first token), else the implicit one
    /// (`button`, `link`, `textbox`, `checkbox`, `radio`, `combobox`, `searchbox`, `heading`,
    /// `img`, `listitem`, ...); `"generic"` when there is none. A cross-origin frame is
    /// `"iframe"`.
    pub role: String,
    /// Accessible name (aria-labelledby, aria-label, labels, alt, value of input buttons,
    /// placeholder or title of fields, text content, title), whitespace-collapsed, at most
    /// 200 characters. Never the value of a field.
    pub name: String,
    /// Lower-case tag name.
    pub tag: String,
    /// The input type (lower case) for `<input>` elements.
    #[serde(default)]
    pub input_type: Option<String>,
    /// URL of the document the element is in (the page or a same-origin frame); for a
    /// cross-origin frame, the frame's `src`.
    pub url: String,
}

/// The editable element that has keyboard focus in the active tab.
#[derive(Debug, Clone)]
pub struct FocusedField {
    /// `"password"`, `"text"`, `"email"`, `"tel"`, `"number"`, `"search"`, `"url"`, ... (the
    /// input's type, lower case), `"textarea"` or `"contenteditable"`.
    pub kind: String,
    /// URL of the document owning the element: the frame that receives the keys.
    pub url: String,
    /// The element's `autocomplete` attribute, when present.
    pub autocomplete: Option<String>,
    /// Identifies this very element for [`Browser::is_focused`].
    pub handle: FocusHandle,
}

/// An opaque reference to one focused element of one tab (see [`Browser::is_focused`]).
///
/// It holds a CDP remote object of this connection: after Chrome restarts (or the owner
/// reconnects) the element is gone and `is_focused` answers `false`.
#[derive(Debug, Clone, PartialEq)]
pub struct FocusHandle {
    /// The tab's CDP target id.
    target: String,
    /// The main frame's loader id when the handle was taken: a new document has another one
    /// (this also catches a document kept in the back/forward cache, whose objects live on).
    loader: String,
    /// The element's remote object id (in the top document's execution context).
    object: String,
}

/// Remote objects of focused fields live in this group (never released: a handle must stay
/// valid as long as its document; the objects die with their execution context).
const OBJECT_GROUP: &str = "zigral-focus";

impl Browser {
    /// What is at screen point (`screen_x`, `screen_y`) of the active tab: the nearest
    /// interactive element (a click on the `<span>` inside a `<button>` reports the button),
    /// looked up inside same-origin frames; a cross-origin frame is reported as the frame.
    /// `None` when the point is outside the tab's viewport (on the tab strip, say) or hits
    /// nothing.
    pub async fn element_at(&self, screen_x: i32, screen_y: i32) -> Result<Option<ElementInfo>> {
        let (vp, scale) = self.viewport().await?;
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        let (Some(x), Some(y)) = (
            to_css(screen_x, vp.x, vp.w, scale),
            to_css(screen_y, vp.y, vp.h, scale),
        ) else {
            return Ok(None);
        };
        let v = self
            .evaluate(&format!("({ELEMENT_AT_JS})({x}, {y})"))
            .await?;
        if v.is_null() {
            return Ok(None);
        }
        serde_json::from_value(v)
            .map(Some)
            .map_err(|e| BrowserError::Script(format!("unexpected element shape: {e}")))
    }

    /// The editable element that has keyboard focus in the active tab, if any: a text-like
    /// `<input>` (not disabled, not read-only), a `<textarea>` or a contenteditable element,
    /// found through same-origin frames and open shadow roots. `None` when nothing editable
    /// has focus, when focus is inside a cross-origin frame (it cannot be seen from here:
    /// callers must refuse to type then), and when the page itself does not have the keyboard
    /// (`document.hasFocus()` is false: the omnibox has it, or Chrome's window was never
    /// clicked) — X key events would not reach the field then.
    pub async fn focused_field(&self) -> Result<Option<FocusedField>> {
        let mut s = self.session().await?;
        let target = s.active_id().await?;
        let page = s.page(&target).await?;
        let loader = main_loader_id(&s, &page).await?;
        let v = s
            .page_cmd(
                &page,
                "Runtime.evaluate",
                json!({"expression": FOCUSED_JS, "returnByValue": false, "objectGroup": OBJECT_GROUP}),
            )
            .await?;
        script_error(&v)?;
        let Some(object) = v["result"]["objectId"].as_str().map(str::to_owned) else {
            return Ok(None);
        };
        let info = s
            .page_cmd(
                &page,
                "Runtime.callFunctionOn",
                json!({"objectId": object, "functionDeclaration": FIELD_INFO_JS, "returnByValue": true}),
            )
            .await?;
        script_error(&info)?;
        let info = &info["result"]["value"];
        Ok(Some(FocusedField {
            kind: info["kind"].as_str().unwrap_or_default().to_owned(),
            url: info["url"].as_str().unwrap_or_default().to_owned(),
            autocomplete: info["autocomplete"].as_str().map(str::to_owned),
            handle: FocusHandle {
                target,
                loader,
                object,
            },
        }))
    }

    /// Whether the element behind `h` is still the focused element of its tab (walking
    /// `activeElement` from the top document through same-origin frames and shadow roots).
    /// This is the document's focus: it stays `true` while the omnibox or another tab has
    /// the keyboard (the field comes back focused), so it is the conservative answer for
    /// withholding screenshots; before typing, ask [`Browser::focused_field`] again. Handles
    /// are compared by element here, not with `==` (two handles of one element differ).
    /// `false` — not an error — when the tab navigated to another document, was closed, or
    /// the element is gone. Errors only when Chrome cannot be asked (unavailable, timed out):
    /// then the answer is unknown.
    pub async fn is_focused(&self, h: &FocusHandle) -> Result<bool> {
        let s = self.session().await?;
        if !s.targets().await?.iter().any(|t| t.id == h.target) {
            return Ok(false);
        }
        let page = match s.page(&h.target).await {
            Ok(p) => p,
            Err(e) => return unknown_or_false(e),
        };
        match main_loader_id(&s, &page).await {
            Ok(l) if l == h.loader => {}
            Ok(_) => return Ok(false),
            Err(e) => return unknown_or_false(e),
        }
        let v = s
            .page_cmd(
                &page,
                "Runtime.callFunctionOn",
                json!({"objectId": h.object, "functionDeclaration": IS_FOCUSED_JS, "returnByValue": true}),
            )
            .await;
        match v {
            Ok(v) => Ok(v.get("exceptionDetails").is_none() && v["result"]["value"] == true),
            Err(e) => unknown_or_false(e),
        }
    }
}

/// Screen coordinate → CSS pixel of the viewport (`None` outside `[origin, origin + len)`).
fn to_css(screen: i32, origin: i32, len: i32, scale: f64) -> Option<f64> {
    (screen >= origin && screen < origin.saturating_add(len))
        .then(|| f64::from(screen - origin) / scale)
}

/// The main frame's loader id (changes with every new document of the tab).
async fn main_loader_id(s: &Session<'_>, page: &Page) -> Result<String> {
    let v = s.page_cmd(page, "Page.getFrameTree", json!({})).await?;
    v["frameTree"]["frame"]["loaderId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| BrowserError::Cdp("Page.getFrameTree returned no loaderId".into()))
}

/// A thrown exception in a `Runtime.*` result as [`BrowserError::Script`].
fn script_error(v: &Value) -> Result<()> {
    match v.get("exceptionDetails") {
        None => Ok(()),
        Some(ex) => Err(BrowserError::Script(
            ex["exception"]["description"]
                .as_str()
                .or_else(|| ex["text"].as_str())
                .unwrap_or("exception")
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        )),
    }
}

/// For `is_focused`: errors that leave the answer unknown stay errors; the rest (the target or
/// the object is gone, Chrome refused the object id) mean "no longer focused".
fn unknown_or_false(e: BrowserError) -> Result<bool> {
    match e {
        BrowserError::Unavailable(_) | BrowserError::Timeout(_) => Err(e),
        _ => Ok(false),
    }
}

/// Hit test at CSS point (x, y) of the top document. Returns `null` or an [`ElementInfo`].
const ELEMENT_AT_JS: &str = r#"(x, y) => {
  const clean = (s) => String(s || '').replace(/\s+/g, ' ').trim().slice(0, 200);
  const INTERACTIVE = 'a[href],area[href],button,input,select,textarea,summary,[role],[onclick],[tabindex],label,[contenteditable]:not([contenteditable="false"])';
  const explicitRole = (el) => (el.getAttribute('role') || '').trim().split(/\s+/)[0].toLowerCase();
  const isFrame = (el) => el.localName === 'iframe' || el.localName === 'frame';
  const implicitRole = (el) => {
    const t = el.localName;
    switch (t) {
      case 'a': case 'area': return el.hasAttribute('href') ? 'link' : 'generic';
      case 'button': case 'summary': return 'button';
      case 'input': {
        const type = (el.type || 'text').toLowerCase();
        switch (type) {
          case 'button': case 'submit': case 'reset': case 'image': case 'file': return 'button';
          case 'checkbox': return 'checkbox';
          case 'radio': return 'radio';
          case 'range': return 'slider';
          case 'number': return 'spinbutton';
          case 'hidden': return 'generic';
          case 'search': return el.hasAttribute('list') ? 'combobox' : 'searchbox';
          default: return el.hasAttribute('list') ? 'combobox' : 'textbox';
        }
      }
      case 'select': return el.multiple || el.size > 1 ? 'listbox' : 'combobox';
      case 'textarea': return 'textbox';
      case 'img': return el.getAttribute('alt') === '' ? 'presentation' : 'img';
      case 'h1': case 'h2': case 'h3': case 'h4': case 'h5': case 'h6': return 'heading';
      case 'li': return 'listitem';
      case 'ul': case 'ol': case 'menu': return 'list';
      case 'nav': return 'navigation';
      case 'main': return 'main';
      case 'aside': return 'complementary';
      case 'form': return 'form';
      case 'dialog': return 'dialog';
      case 'table': return 'table';
      case 'tr': return 'row';
      case 'td': return 'cell';
      case 'th': return 'columnheader';
      case 'option': return 'option';
      case 'progress': return 'progressbar';
      case 'meter': return 'meter';
      case 'article': return 'article';
      case 'fieldset': case 'details': return 'group';
      case 'p': return 'paragraph';
      case 'hr': return 'separator';
      case 'output': return 'status';
      case 'iframe': case 'frame': return 'iframe';
    }
    if (el.isContentEditable && !(el.parentElement && el.parentElement.isContentEditable)) return 'textbox';
    return 'generic';
  };
  const nameOf = (el) => {
    const root = el.getRootNode();
    const lb = el.getAttribute('aria-labelledby');
    if (lb && root.getElementById) {
      const s = clean(lb.split(/\s+/).map(id => {
        const e = root.getElementById(id);
        return e ? (e.innerText || e.textContent) : '';
      }).join(' '));
      if (s) return s;
    }
    const al = clean(el.getAttribute('aria-label'));
    if (al) return al;
    if (el.labels && el.labels.length) {
      const s = clean(Array.from(el.labels).map(l => l.innerText || l.textContent).join(' '));
      if (s) return s;
    }
    const t = el.localName;
    const title = clean(el.getAttribute('title'));
    if (t === 'img' || t === 'area' || (t === 'input' && el.type === 'image')) {
      return clean(el.getAttribute('alt')) || title;
    }
    if (t === 'input') {
      const type = (el.type || 'text').toLowerCase();
      if (type === 'button' || type === 'submit' || type === 'reset') {
        return clean(el.value) || (type === 'submit' ? 'Submit' : type === 'reset' ? 'Reset' : title);
      }
      // Never the value of a field: it may be a secret.
      return clean(el.getAttribute('placeholder')) || title;
    }
    if (t === 'textarea') return clean(el.getAttribute('placeholder')) || title;
    if (t === 'select' || isFrame(el) || t === 'body' || t === 'html') return title;
    if (el.isContentEditable) return clean(el.getAttribute('aria-placeholder')) || title;
    return clean(el.innerText || el.textContent) || title;
  };
  const interactive = (el) => {
    if (!el.matches(INTERACTIVE)) return false;
    const r = explicitRole(el);
    return r !== 'none' && r !== 'presentation';
  };
  const parentOf = (el) => el.parentElement || (el.parentNode && el.parentNode.host) || null;
  const info = (el, url) => ({
    role: explicitRole(el) || implicitRole(el),
    name: nameOf(el),
    tag: el.localName,
    input_type: el.localName === 'input' ? (el.type || 'text').toLowerCase() : null,
    url,
  });

  let doc = document, cx = x, cy = y, frame = null;
  for (let depth = 0; depth < 16; depth++) {
    let hit = doc.elementFromPoint(cx, cy);
    while (hit && hit.shadowRoot) {
      const inner = hit.shadowRoot.elementFromPoint(cx, cy);
      if (!inner || inner === hit) break;
      hit = inner;
    }
    if (!hit) return frame ? info(frame, frame.ownerDocument.URL) : null;
    if (isFrame(hit)) {
      let inner = null;
      try { inner = hit.contentDocument; } catch (e) { inner = null; }
      if (!inner) {
        const src = hit.src || (hit.hasAttribute('srcdoc') ? 'about:srcdoc' : 'about:blank');
        return { role: 'iframe', name: clean(hit.getAttribute('title')), tag: hit.localName, input_type: null, url: src };
      }
      const r = hit.getBoundingClientRect();
      const cs = hit.ownerDocument.defaultView.getComputedStyle(hit);
      cx -= r.left + hit.clientLeft + (parseFloat(cs.paddingLeft) || 0);
      cy -= r.top + hit.clientTop + (parseFloat(cs.paddingTop) || 0);
      frame = hit;
      doc = inner;
      continue;
    }
    let el = hit;
    for (let e = hit; e; e = parentOf(e)) {
      if (interactive(e)) { el = e; break; }
    }
    if (el.localName === 'label' && el.control) el = el.control;
    return info(el, el.ownerDocument.URL);
  }
  return null;
}"#;

/// The walk from the top document's `activeElement` through same-origin frames and open
/// shadow roots, as a function body fragment: leaves the deepest element in `el`, or `null`
/// when focus is inside a frame whose document cannot be read (cross-origin).
macro_rules! walk_js {
    () => {
        r#"
  let el = document.activeElement;
  for (let i = 0; i < 64 && el; i++) {
    if (el.localName === 'iframe' || el.localName === 'frame') {
      let d = null;
      try { d = el.contentDocument; } catch (e) { d = null; }
      el = d ? d.activeElement : null;
      continue;
    }
    if (el.shadowRoot && el.shadowRoot.activeElement) { el = el.shadowRoot.activeElement; continue; }
    break;
  }
"#
    };
}

/// `Runtime.evaluate` expression: the focused editable element, or `null`.
const FOCUSED_JS: &str = concat!(
    "(() => {\n  if (!document.hasFocus()) return null;",
    walk_js!(),
    r#"
  if (!el) return null;
  const t = el.localName;
  if (t === 'input') {
    const NOT_TEXT = ['button', 'submit', 'reset', 'image', 'checkbox', 'radio', 'file', 'hidden', 'range', 'color'];
    if (NOT_TEXT.includes((el.type || 'text').toLowerCase())) return null;
    return el.matches(':disabled') || el.readOnly ? null : el;
  }
  if (t === 'textarea') return el.matches(':disabled') || el.readOnly ? null : el;
  return el.isContentEditable ? el : null;
})()"#
);

/// `Runtime.callFunctionOn` on the field: what kind, in which document, its autocomplete.
const FIELD_INFO_JS: &str = r#"function() {
  const t = this.localName;
  const kind = t === 'input' ? (this.type || 'text').toLowerCase() : t === 'textarea' ? 'textarea' : 'contenteditable';
  return { kind, url: this.ownerDocument.URL, autocomplete: this.getAttribute('autocomplete') };
}"#;

/// `Runtime.callFunctionOn` on the field: is it still where the focus walk ends?
const IS_FOCUSED_JS: &str = concat!("function() {", walk_js!(), "  return el === this;\n}");
