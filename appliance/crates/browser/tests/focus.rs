//! What is under the pointer and what has keyboard focus, with real Chromium on Xvfb: the
//! role, name and document of the element a click at a screen point would hit (through
//! same-origin frames, not into cross-origin ones), the focused editable field, and whether
//! that very field still has focus after blur, removal, navigation and closing the tab.

use serde_json::{Value, json};
use zigral_browser::testkit::{Chrome, PageServer, Response, until};
use zigral_browser::{Browser, BrowserOptions, ElementInfo, Rect, UrlPolicy};
use zigral_desktop::{Button, Desktop};
use zigral_tests::Xvfb;

struct Env {
    _x: Xvfb,
    _chrome: Chrome,
    _dir: tempfile::TempDir,
    pages: PageServer,
    /// Served as `http://localhost:PORT`: another origin than `pages` (127.0.0.1).
    other: PageServer,
    browser: Browser,
    desktop: Desktop,
}

impl Env {
    fn other_url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.other.port)
    }
}

/// Absolutely placed box style (CSS pixels from the viewport's top left).
fn at(x: u32, y: u32, w: u32, h: u32) -> String {
    format!("position:absolute;left:{x}px;top:{y}px;width:{w}px;height:{h}px;margin:0")
}

fn env() -> Env {
    let x = Xvfb::start(1280, 800);
    let dir = tempfile::tempdir().expect("tempdir");
    let chrome = Chrome::start(x.display, 1280, 800, &dir.path().join("chrome"));
    let pages = PageServer::start();
    let other = PageServer::start();
    let cross = format!("http://localhost:{}/x", other.port);
    pages.page(
        "/form",
        Response::html(format!(
            r#"<!doctype html><html><head><title>Form</title></head><body style="margin:0;min-height:100vh">
<button id="send" style="{};padding:0;border:0"><span id="sendspan" style="display:inline-block;width:120px;height:40px">Send</span></button>
<a id="docs" href="/inner" style="{};display:block">Read   the
  docs</a>
<label for="pw" style="{}">Password</label>
<input id="pw" type="password" autocomplete="current-password" style="{}">
<input id="email" type="email" placeholder="you@example.com" style="{}">
<input id="ro" readonly value="fixed" style="{}">
<input id="dis" disabled style="{}">
<textarea id="ta" style="{}"></textarea>
<div id="ce" contenteditable="true" style="{}"></div>
<div id="del" onclick="void 0" style="{}"><b id="delb">Delete account</b></div>
<label id="agreel" style="{}"><input type="checkbox" id="agree"> <span id="agreetext">I agree</span></label>
<iframe id="same" title="Inner frame" src="/inner" onload="window.__sameLoaded = true" style="{};border:2px solid black;padding:0"></iframe>
<iframe id="cross" title="Payments" src="{cross}" onload="window.__crossLoaded = true" style="{};border:2px solid black;padding:0"></iframe>
</body></html>"#,
            at(20, 20, 120, 40),
            at(20, 80, 120, 30),
            at(20, 130, 150, 30),
            at(200, 130, 150, 30),
            at(20, 180, 150, 30),
            at(20, 230, 150, 30),
            at(200, 230, 150, 30),
            at(20, 280, 150, 50),
            at(200, 280, 150, 50),
            at(400, 20, 200, 40),
            at(400, 80, 200, 30),
            at(20, 350, 300, 150),
            at(400, 350, 300, 150),
        )),
    );
    pages.page(
        "/inner",
        Response::html(format!(
            r#"<!doctype html><title>Inner</title><body style="margin:0">
<button id="ib" style="{}">Inner</button><input id="ii" style="{}"></body>"#,
            at(10, 10, 100, 30),
            at(10, 60, 150, 30),
        )),
    );
    pages.page(
        "/other",
        Response::html("<!doctype html><title>Other</title><p>another document</p>"),
    );
    other.page(
        "/x",
        Response::html(format!(
            r#"<!doctype html><title>Cross</title><body style="margin:0">
<input id="xi" style="{}"></body>"#,
            at(10, 10, 200, 30),
        )),
    );
    let desktop = Desktop::connect(&format!(":{}", x.display)).expect("X display");
    let browser = Browser::new(BrowserOptions::new(chrome.port));
    Env {
        _x: x,
        _chrome: chrome,
        _dir: dir,
        pages,
        other,
        browser,
        desktop,
    }
}

/// Screen point of CSS point (`x`, `y`) of the viewport.
fn screen(vp: (Rect, f64), x: f64, y: f64) -> (i32, i32) {
    let (r, k) = vp;
    (r.x + (x * k).round() as i32, r.y + (y * k).round() as i32)
}

/// Opens /form and waits until both frames have loaded.
async fn open_form(e: &Env) {
    e.browser
        .navigate(&e.pages.url("/form"), &UrlPolicy::default())
        .await
        .expect("nav");
    until("both frames to load", || async {
        let v = e
            .browser
            .evaluate("window.__sameLoaded === true && window.__crossLoaded === true")
            .await
            .ok()?;
        (v == json!(true)).then_some(())
    })
    .await;
}

/// Gives the page the keyboard the way a person or the agent does: an X click on an empty
/// part of it (Chrome's window on a bare Xvfb is not active until clicked).
async fn click_into_page(e: &Env) {
    let vp = e.browser.viewport().await.expect("viewport");
    let (x, y) = screen(vp, 900.0, 600.0);
    e.desktop
        .click_at(x, y, Button::Left, 1)
        .await
        .expect("click");
    until("the page to have the keyboard", || async {
        (e.browser.evaluate("document.hasFocus()").await.ok()? == json!(true)).then_some(())
    })
    .await;
}

async fn eval(e: &Env, js: &str) -> Value {
    e.browser.evaluate(js).await.expect(js)
}

async fn focused_kind(e: &Env) -> Option<String> {
    e.browser
        .focused_field()
        .await
        .expect("focused_field")
        .map(|f| f.kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn element_at_reports_what_a_click_would_hit() {
    let e = env();
    let b = &e.browser;
    open_form(&e).await;
    let vp = b.viewport().await.expect("viewport");
    let page_url = e.pages.url("/form");
    let hit = |x: f64, y: f64| {
        let (sx, sy) = screen(vp, x, y);
        async move { b.element_at(sx, sy).await.expect("element_at") }
    };

    // The click lands on the <span>; the report is the button around it.
    assert_eq!(
        eval(&e, "document.elementFromPoint(80, 40).id").await,
        json!("sendspan")
    );
    assert_eq!(
        hit(80.0, 40.0).await,
        Some(ElementInfo {
            role: "button".into(),
            name: "Send".into(),
            tag: "button".into(),
            input_type: None,
            url: page_url.clone(),
        })
    );
    let link = hit(60.0, 95.0).await.expect("link");
    assert_eq!(
        (link.role.as_str(), link.name.as_str()),
        ("link", "Read the docs")
    );
    assert_eq!(link.tag, "a");

    let pw = hit(250.0, 145.0).await.expect("password field");
    assert_eq!(pw.role, "textbox");
    assert_eq!(pw.name, "Password", "named by its <label for>");
    assert_eq!(pw.input_type.as_deref(), Some("password"));
    assert_eq!(pw.url, page_url);
    let email = hit(60.0, 195.0).await.expect("email field");
    assert_eq!(
        (email.role.as_str(), email.name.as_str()),
        ("textbox", "you@example.com")
    );

    // A clickable <div> named by its text; a label's text reports the control it toggles.
    assert_eq!(
        eval(&e, "document.elementFromPoint(420, 30).id").await,
        json!("delb")
    );
    let del = hit(420.0, 30.0).await.expect("div");
    assert_eq!(
        (del.role.as_str(), del.name.as_str(), del.tag.as_str()),
        ("generic", "Delete account", "div")
    );
    let agree = eval(
        &e,
        "JSON.stringify(document.getElementById('agreetext').getBoundingClientRect())",
    )
    .await;
    let r: Value = serde_json::from_str(agree.as_str().expect("rect")).expect("json");
    let (ax, ay) = (
        r["x"].as_f64().expect("x") + 5.0,
        r["y"].as_f64().expect("y") + 5.0,
    );
    let agree = hit(ax, ay).await.expect("label");
    assert_eq!(
        (agree.role.as_str(), agree.name.as_str()),
        ("checkbox", "I agree")
    );
    assert_eq!(agree.input_type.as_deref(), Some("checkbox"));

    // Empty page background: the body, with no name (never the whole page's text).
    let body = hit(900.0, 600.0).await.expect("body");
    assert_eq!((body.tag.as_str(), body.name.as_str()), ("body", ""));
    assert_eq!(body.role, "generic");

    // Inside a same-origin frame: the inner element, with the frame's URL. The frame is at
    // (20, 350) with a 2px border; the inner button at (10, 10) 100x30.
    let inner = hit(20.0 + 2.0 + 60.0, 350.0 + 2.0 + 25.0)
        .await
        .expect("inner");
    assert_eq!(
        inner,
        ElementInfo {
            role: "button".into(),
            name: "Inner".into(),
            tag: "button".into(),
            input_type: None,
            url: e.pages.url("/inner"),
        }
    );
    // A cross-origin frame is reported as the frame.
    let cross = hit(400.0 + 2.0 + 50.0, 350.0 + 2.0 + 25.0)
        .await
        .expect("cross");
    assert_eq!(
        cross,
        ElementInfo {
            role: "iframe".into(),
            name: "Payments".into(),
            tag: "iframe".into(),
            input_type: None,
            url: e.other_url("/x"),
        }
    );

    // Outside the viewport: on Chrome's tab strip and toolbar, right of and below the page.
    let (r, _) = vp;
    assert!(r.y > 30, "the toolbar is above the viewport: {r:?}");
    assert_eq!(
        b.element_at(r.x + 50, r.y - 20).await.expect("toolbar"),
        None
    );
    assert_eq!(b.element_at(r.x + 50, 5).await.expect("tab strip"), None);
    assert_eq!(
        b.element_at(r.x + r.w, r.y + 50).await.expect("right"),
        None
    );
    assert_eq!(
        b.element_at(r.x + 50, r.y + r.h).await.expect("below"),
        None
    );
    assert!(
        b.element_at(r.x, r.y).await.expect("corner").is_some(),
        "the viewport's first pixel is inside"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn focused_field_is_the_editable_element_that_gets_the_keys() {
    let e = env();
    let b = &e.browser;
    open_form(&e).await;
    click_into_page(&e).await;

    eval(&e, "document.getElementById('pw').focus()").await;
    let f = b.focused_field().await.expect("focused").expect("password");
    assert_eq!(f.kind, "password");
    assert_eq!(f.url, e.pages.url("/form"));
    assert_eq!(f.autocomplete.as_deref(), Some("current-password"));
    assert!(
        !format!("{f:?}").contains("fixed"),
        "no field value in the report"
    );
    eval(&e, "document.getElementById('email').focus()").await;
    let f = b.focused_field().await.expect("focused").expect("email");
    assert_eq!((f.kind.as_str(), f.autocomplete), ("email", None));
    eval(&e, "document.getElementById('ta').focus()").await;
    assert_eq!(focused_kind(&e).await.as_deref(), Some("textarea"));
    eval(&e, "document.getElementById('ce').focus()").await;
    assert_eq!(focused_kind(&e).await.as_deref(), Some("contenteditable"));

    // Not editable: a disabled input (cannot take focus), a read-only one (can), a button,
    // nothing at all.
    eval(
        &e,
        "document.activeElement.blur(); document.getElementById('dis').focus()",
    )
    .await;
    assert_eq!(
        eval(&e, "document.activeElement.localName").await,
        json!("body")
    );
    assert_eq!(focused_kind(&e).await, None);
    eval(&e, "document.getElementById('ro').focus()").await;
    assert_eq!(eval(&e, "document.activeElement.id").await, json!("ro"));
    assert_eq!(focused_kind(&e).await, None, "read-only");
    eval(&e, "document.getElementById('send').focus()").await;
    assert_eq!(eval(&e, "document.activeElement.id").await, json!("send"));
    assert_eq!(focused_kind(&e).await, None, "a button");

    // A field inside a same-origin frame: its document is the frame's.
    eval(
        &e,
        "document.getElementById('same').contentDocument.getElementById('ii').focus()",
    )
    .await;
    let f = b
        .focused_field()
        .await
        .expect("focused")
        .expect("frame field");
    assert_eq!(
        (f.kind.as_str(), f.url.as_str()),
        ("text", e.pages.url("/inner").as_str())
    );

    // Focus inside a cross-origin frame (a real click into its input) cannot be seen: None.
    let vp = b.viewport().await.expect("viewport");
    let (x, y) = screen(vp, 400.0 + 2.0 + 60.0, 350.0 + 2.0 + 25.0);
    e.desktop
        .click_at(x, y, Button::Left, 1)
        .await
        .expect("click");
    until("focus to move into the cross-origin frame", || async {
        (eval(&e, "document.activeElement.id").await == json!("cross")).then_some(())
    })
    .await;
    assert_eq!(focused_kind(&e).await, None, "cross-origin frame");

    // The omnibox has the keyboard: the page's field keeps the document's focus, but keys
    // would not reach it, so there is no focused field; the handle still names it.
    click_into_page(&e).await;
    eval(&e, "document.getElementById('pw').focus()").await;
    let f = b.focused_field().await.expect("focused").expect("password");
    e.desktop.key("ctrl+l").await.expect("ctrl+l");
    until("the omnibox to take the keyboard", || async {
        (eval(&e, "document.hasFocus()").await == json!(false)).then_some(())
    })
    .await;
    assert_eq!(focused_kind(&e).await, None, "omnibox has the keys");
    assert!(b.is_focused(&f.handle).await.expect("is_focused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn is_focused_follows_that_very_element() {
    let e = env();
    let b = &e.browser;
    open_form(&e).await;
    click_into_page(&e).await;

    eval(&e, "document.getElementById('pw').focus()").await;
    let pw = b.focused_field().await.expect("ff").expect("pw").handle;
    assert!(b.is_focused(&pw).await.expect("is_focused"));
    // The handle survives other calls on the same connection.
    let vp = b.viewport().await.expect("viewport");
    let (x, y) = screen(vp, 80.0, 40.0);
    b.element_at(x, y).await.expect("element_at");
    b.a11y_snapshot(50).await.expect("snapshot");
    b.current().await.expect("current");
    let again = b.focused_field().await.expect("ff").expect("pw");
    assert!(b.is_focused(&pw).await.expect("is_focused"));
    assert!(b.is_focused(&again.handle).await.expect("is_focused"));

    // Blur by focusing another element: false; focus back: that same element again.
    eval(&e, "document.getElementById('email').focus()").await;
    assert!(!b.is_focused(&pw).await.expect("is_focused"));
    let email = b.focused_field().await.expect("ff").expect("email").handle;
    assert!(b.is_focused(&email).await.expect("is_focused"));
    eval(&e, "document.getElementById('pw').focus()").await;
    assert!(b.is_focused(&pw).await.expect("is_focused"));
    assert!(!b.is_focused(&email).await.expect("is_focused"));
    eval(&e, "document.activeElement.blur()").await;
    assert!(!b.is_focused(&pw).await.expect("is_focused"));

    // A field in a same-origin frame; the frame navigates away.
    eval(
        &e,
        "document.getElementById('same').contentDocument.getElementById('ii').focus()",
    )
    .await;
    let inner = b.focused_field().await.expect("ff").expect("inner").handle;
    assert!(b.is_focused(&inner).await.expect("is_focused"));
    eval(&e, "document.getElementById('same').src = '/other'").await;
    until("the frame to navigate", || async {
        (eval(&e, "(() => { const d = document.getElementById('same').contentDocument; return !!d && d.title === 'Other' && d.readyState === 'complete'; })()").await == json!(true)).then_some(())
    })
    .await;
    assert!(!b.is_focused(&inner).await.expect("is_focused"));

    // The element is removed.
    eval(&e, "document.getElementById('pw').focus()").await;
    assert!(b.is_focused(&pw).await.expect("is_focused"));
    eval(&e, "document.getElementById('pw').remove()").await;
    assert!(!b.is_focused(&pw).await.expect("is_focused"));

    // The tab navigates, even to the same URL with the same field focused again.
    eval(&e, "document.getElementById('email').focus()").await;
    let email = b.focused_field().await.expect("ff").expect("email").handle;
    assert!(b.is_focused(&email).await.expect("is_focused"));
    open_form(&e).await;
    eval(&e, "document.getElementById('email').focus()").await;
    assert_eq!(eval(&e, "document.activeElement.id").await, json!("email"));
    assert!(!b.is_focused(&email).await.expect("is_focused"));

    // The tab is closed.
    let now = b.focused_field().await.expect("ff").expect("email").handle;
    assert!(b.is_focused(&now).await.expect("is_focused"));
    let tab = b.current().await.expect("current").id;
    b.close_tab(&tab).await.expect("close");
    assert!(!b.is_focused(&now).await.expect("is_focused"));
}
