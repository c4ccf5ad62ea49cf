//! Real Chromium on Xvfb, driven over CDP: navigation and the URL policy, tabs, page text,
//! the accessibility snapshot's screen coordinates, downloads, checkpoints and reconnecting
//! after Chrome is killed and restarted (the test plays the supervisor).

use std::time::Duration;

use serde_json::json;
use zigral_browser::testkit::{Chrome, PageServer, Response};
use zigral_browser::{Browser, BrowserError, BrowserOptions, UrlPolicy};
use zigral_tests::Xvfb;

struct Env {
    _x: Xvfb,
    chrome: Chrome,
    _dir: tempfile::TempDir,
    pages: PageServer,
    browser: Browser,
    downloads: std::path::PathBuf,
}

fn env() -> Env {
    let x = Xvfb::start(1280, 800);
    let dir = tempfile::tempdir().expect("tempdir");
    let chrome = Chrome::start(x.display, 1280, 800, &dir.path().join("chrome"));
    let pages = PageServer::start();
    pages.page(
        "/one",
        Response::html(
            r#"<!doctype html><html><head><title>One</title></head><body style="margin:0">
<h1>Page one</h1>
<main><p>Hello from the main content. ✓ Grüße</p></main>
<button id="b" style="position:absolute;left:100px;top:200px;width:120px;height:40px">Press me</button>
<label for="q">Search</label><input id="q" style="position:absolute;left:300px;top:300px" value="abc">
<input type="password" id="pw" value="secret-value">
<a href="/two">to two</a>
</body></html>"#,
        ),
    );
    pages.page(
        "/two",
        Response::html("<!doctype html><title>Two</title><p>second page</p>"),
    );
    pages.page(
        "/login",
        Response::html("<!doctype html><title>Logged in</title><p>ok</p>")
            .header("Set-Cookie", "sid=abc123; HttpOnly; Path=/")
            .header("Set-Cookie", "pref=dark; Path=/; Max-Age=3600"),
    );
    pages.page(
        "/report.txt",
        Response {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "application/octet-stream".into()),
                (
                    "Content-Disposition".into(),
                    "attachment; filename=\"report.txt\"".into(),
                ),
            ],
            body: b"quarterly numbers\n".to_vec(),
        },
    );
    pages.page(
        "/dl",
        Response::html(r#"<!doctype html><title>DL</title><a id="d" href="/report.txt">get</a>"#),
    );
    let downloads = dir.path().join("downloads");
    let mut opts = BrowserOptions::new(chrome.port);
    opts.downloads_dir = Some(downloads.clone());
    opts.reconnect_timeout = Duration::from_secs(2);
    Env {
        _x: x,
        chrome,
        _dir: dir,
        pages,
        browser: Browser::new(opts),
        downloads,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navigation_tabs_text_and_policy() {
    let e = env();
    let b = &e.browser;
    let p = UrlPolicy::default();
    let product = b.connect().await.expect("connect");
    assert!(product.contains("Chrome"), "{product}");

    let t = b.navigate(&e.pages.url("/one"), &p).await.expect("nav one");
    assert_eq!(t.title, "One");
    assert!(t.url.ends_with("/one"));
    let t = b.navigate(&e.pages.url("/two"), &p).await.expect("nav two");
    assert_eq!(t.title, "Two");
    assert_eq!(b.back().await.expect("back").title, "One");
    assert_eq!(b.forward().await.expect("forward").title, "Two");
    b.evaluate("window.__x = 1").await.expect("eval");
    assert_eq!(b.reload().await.expect("reload").title, "Two");
    assert_eq!(
        b.evaluate("window.__x === undefined").await.expect("eval"),
        json!(true)
    );
    let err = b.forward().await.expect_err("no forward entry");
    assert!(matches!(err, BrowserError::Invalid(_)), "{err}");

    // URL policy: refused before anything happens.
    for bad in [
        "file:///etc/passwd",
        "javascript:alert(1)",
        "chrome://version",
        "data:text/html,x",
    ] {
        let err = b.navigate(bad, &p).await.expect_err(bad);
        assert!(
            matches!(err, BrowserError::UrlNotAllowed(_)),
            "{bad}: {err}"
        );
        assert!(err.is_client_error());
    }
    let only_example = UrlPolicy {
        allowed_domains: Some(vec!["example.com".into()]),
        ..Default::default()
    };
    let err = b
        .navigate(&e.pages.url("/one"), &only_example)
        .await
        .expect_err("domain");
    assert!(err.to_string().contains("allowlist"), "{err}");
    assert_eq!(
        b.current().await.expect("current").title,
        "Two",
        "nothing navigated"
    );
    // A refused connection is a navigation error, not a hang.
    let dead = format!("http://127.0.0.1:{}/", zigral_tests::free_port());
    let err = b.navigate(&dead, &p).await.expect_err("refused");
    assert!(matches!(err, BrowserError::Navigation(_)), "{err}");

    // Tabs.
    b.navigate(&e.pages.url("/two"), &p).await.expect("nav");
    let first = b.current().await.expect("current");
    let t2 = b
        .new_tab(Some(&e.pages.url("/one")), &p)
        .await
        .expect("new tab");
    assert_eq!(t2.title, "One");
    let tabs = b.tabs().await.expect("tabs");
    assert_eq!(tabs.len(), 2, "{tabs:?}");
    assert!(tabs.iter().any(|t| t.id == t2.id && t.active));
    assert_eq!(b.current().await.expect("cur").id, t2.id);
    let back = b.switch_tab(&first.id).await.expect("switch");
    assert_eq!(back.title, "Two");
    assert!(b.evaluate("document.visibilityState").await.expect("vis") == json!("visible"));
    let left = b.close_tab(&t2.id).await.expect("close");
    assert_eq!(left.len(), 1);
    assert!(matches!(
        b.switch_tab("nope").await,
        Err(BrowserError::NotFound(_))
    ));
    // Closing the last tab leaves a blank one (Chrome keeps its window).
    let left = b.close_tab(&first.id).await.expect("close last");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].url, "about:blank");

    // Page text: the main content, not the whole body.
    b.navigate(&e.pages.url("/one"), &p).await.expect("nav");
    let text = b.page_text(10_000).await.expect("text");
    assert_eq!(text.title, "One");
    assert!(
        text.text.contains("Hello from the main content. ✓ Grüße"),
        "{text:?}"
    );
    assert!(
        !text.text.contains("Page one"),
        "heading is outside <main>: {text:?}"
    );
    let short = b.page_text(5).await.expect("text");
    assert!(short.truncated && short.text.chars().count() == 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a11y_snapshot_boxes_are_screen_coordinates() {
    let e = env();
    let b = &e.browser;
    b.navigate(&e.pages.url("/one"), &UrlPolicy::default())
        .await
        .expect("nav");
    let snap = b.a11y_snapshot(200).await.expect("snapshot");
    assert_eq!(snap.title, "One");
    // Chrome's window is at 0,0 on the 1280x800 screen; the viewport sits below the toolbar.
    assert_eq!(snap.viewport.x, 0);
    assert!(
        snap.viewport.y > 30 && snap.viewport.y < 200,
        "{:?}",
        snap.viewport
    );
    let bottom = snap.viewport.y + snap.viewport.h;
    assert!((795..=800).contains(&bottom), "{:?}", snap.viewport);
    let button = snap
        .nodes
        .iter()
        .find(|n| n.role == "button" && n.name == "Press me")
        .expect("button in snapshot");
    assert_eq!(button.rect.x, 100);
    assert_eq!(button.rect.y, snap.viewport.y + 200);
    assert_eq!((button.rect.w, button.rect.h), (120, 40));
    assert_eq!(button.center, (160, snap.viewport.y + 220));
    assert!(button.in_viewport);
    let search = snap
        .nodes
        .iter()
        .find(|n| n.role == "textbox" && n.name == "Search")
        .expect("labelled input");
    assert_eq!(search.value.as_deref(), Some("abc"));
    assert_eq!(search.rect.x, 300);
    let heading = snap.nodes.iter().find(|n| n.role == "heading").expect("h1");
    assert_eq!(heading.level, Some(1));
    assert!(
        snap.nodes
            .iter()
            .any(|n| n.role == "link" && n.name == "to two")
    );
    // Password values never leave the page.
    let json = serde_json::to_string(&snap).expect("json");
    assert!(!json.contains("secret-value"));
    let small = b.a11y_snapshot(2).await.expect("snapshot");
    assert!(small.truncated && small.nodes.len() == 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_land_in_the_desktop_directory() {
    let e = env();
    let b = &e.browser;
    assert!(b.downloads().expect("list").is_empty());
    b.navigate(&e.pages.url("/dl"), &UrlPolicy::default())
        .await
        .expect("nav");
    b.evaluate("document.getElementById('d').click()")
        .await
        .expect("click");
    let start = std::time::Instant::now();
    let list = loop {
        let l = b.downloads().expect("list");
        if l.iter().any(|d| d.name == "report.txt" && d.complete) {
            break l;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no download: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let d = list.iter().find(|d| d.name == "report.txt").expect("entry");
    assert_eq!(d.size, 18);
    let path = b.download_path("report.txt").expect("path");
    assert_eq!(path, e.downloads.join("report.txt"));
    assert_eq!(std::fs::read(&path).expect("read"), b"quarterly numbers\n");
    for bad in ["../etc/passwd", "a/b", ".hidden", ""] {
        assert!(
            matches!(b.download_path(bad), Err(BrowserError::Invalid(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        b.download_path("nope.txt"),
        Err(BrowserError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_and_restore_cookies_storage_and_tabs() {
    let e = env();
    let b = &e.browser;
    let p = UrlPolicy::default();
    b.navigate(&e.pages.url("/login"), &p).await.expect("login");
    b.evaluate("localStorage.setItem('k', 'v1'); sessionStorage.setItem('s', 'ses1'); true")
        .await
        .expect("storage");
    let second = b
        .new_tab(Some(&e.pages.url("/two")), &p)
        .await
        .expect("tab");
    b.switch_tab(
        &b.tabs()
            .await
            .expect("tabs")
            .iter()
            .find(|t| t.id != second.id)
            .expect("first")
            .id
            .clone(),
    )
    .await
    .expect("switch back");

    let cp = b.checkpoint().await.expect("checkpoint");
    assert_eq!(cp.tabs.len(), 2);
    let names: Vec<_> = cp
        .cookies
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    assert!(
        names.contains(&"sid") && names.contains(&"pref"),
        "{names:?}"
    );
    assert!(
        cp.cookies
            .iter()
            .any(|c| c["name"] == "sid" && c["httpOnly"] == true)
    );
    // Round-trips through JSON (the store keeps it as JSON).
    let cp: zigral_browser::Checkpoint =
        serde_json::from_str(&serde_json::to_string(&cp).expect("ser")).expect("de");

    // Change everything.
    b.evaluate("localStorage.setItem('k', 'v2'); localStorage.setItem('extra', 'x'); sessionStorage.clear(); document.cookie = 'pref=light; path=/'; true")
        .await
        .expect("mutate");
    let conn = b.checkpoint().await.expect("cp");
    let _ = conn;
    b.close_tab(&second.id).await.expect("close");
    b.navigate(&e.pages.url("/one"), &p)
        .await
        .expect("nav away");
    let cookie_state = b.evaluate("document.cookie").await.expect("cookie");
    assert_eq!(cookie_state, json!("pref=light"));

    b.restore(&cp, &p).await.expect("restore");
    let tabs = b.tabs().await.expect("tabs");
    assert_eq!(tabs.len(), 2, "{tabs:?}");
    let cur = b.current().await.expect("current");
    assert_eq!(cur.title, "Logged in", "the active tab comes back active");
    assert_eq!(
        b.evaluate("localStorage.getItem('k')").await.expect("k"),
        json!("v1")
    );
    assert_eq!(
        b.evaluate("localStorage.getItem('extra')")
            .await
            .expect("x"),
        json!(null)
    );
    assert_eq!(
        b.evaluate("sessionStorage.getItem('s')").await.expect("s"),
        json!("ses1")
    );
    assert_eq!(
        b.evaluate("document.cookie").await.expect("cookie"),
        json!("pref=dark")
    );
    let after = b.checkpoint().await.expect("cp2");
    let sid = after
        .cookies
        .iter()
        .find(|c| c["name"] == "sid")
        .expect("httpOnly cookie back");
    assert_eq!(sid["value"], "abc123");
    assert_eq!(sid["httpOnly"], true);
    assert!(tabs.iter().any(|t| t.title == "Two"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_chrome_restart() {
    let mut e = env();
    let p = UrlPolicy::default();
    e.browser
        .navigate(&e.pages.url("/one"), &p)
        .await
        .expect("nav");
    // Chrome dies; the test is the supervisor.
    e.chrome.kill();
    let err = e.browser.current().await.expect_err("down");
    assert!(matches!(err, BrowserError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("not answering"), "{err}");
    // Restarted (same port and profile): the next call reconnects by itself.
    let chrome = &mut e.chrome;
    tokio::task::block_in_place(|| chrome.restart());
    let t = e
        .browser
        .navigate(&e.pages.url("/two"), &p)
        .await
        .expect("after restart");
    assert_eq!(t.title, "Two");
    assert_eq!(
        e.browser
            .tabs()
            .await
            .expect("tabs")
            .iter()
            .filter(|t| t.active)
            .count(),
        1
    );
}
