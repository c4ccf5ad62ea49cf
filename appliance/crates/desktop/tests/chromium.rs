//! Typing into real Chromium on Xvfb: the text an agent types (any Unicode, via remapped spare
//! keycodes) arrives intact in a page's `<input>`, read back through the window title.

use std::process::{Command, Stdio};
use std::time::Duration;

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{AtomEnum, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;
use zigral_desktop::{Button, Desktop};
use zigral_tests::{Proc, Xvfb, wait_for};

/// Titles of all top-level windows (`_NET_WM_NAME`, else `WM_NAME`).
fn titles(conn: &RustConnection, root: u32) -> Vec<String> {
    let net = conn
        .intern_atom(false, b"_NET_WM_NAME")
        .ok()
        .and_then(|c| c.reply().ok())
        .map(|r| r.atom);
    let utf8 = conn
        .intern_atom(false, b"UTF8_STRING")
        .ok()
        .and_then(|c| c.reply().ok())
        .map(|r| r.atom);
    let Some(tree) = conn.query_tree(root).ok().and_then(|c| c.reply().ok()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for w in tree.children {
        for (prop, ty) in [
            (net, utf8),
            (
                Some(AtomEnum::WM_NAME.into()),
                Some(AtomEnum::STRING.into()),
            ),
        ] {
            let (Some(prop), Some(ty)) = (prop, ty) else {
                continue;
            };
            if let Some(r) = conn
                .get_property(false, w, prop, ty, 0, 4096)
                .ok()
                .and_then(|c| c.reply().ok())
                && !r.value.is_empty()
            {
                out.push(String::from_utf8_lossy(&r.value).into_owned());
                break;
            }
        }
    }
    out
}

/// Polls window titles for up to 30 s; the matching title, or the last titles seen.
fn wait_title(
    conn: &RustConnection,
    root: u32,
    pred: impl Fn(&str) -> bool,
) -> Result<String, Vec<String>> {
    wait_title_for(conn, root, Duration::from_secs(30), pred)
}

fn wait_title_for(
    conn: &RustConnection,
    root: u32,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> Result<String, Vec<String>> {
    let start = std::time::Instant::now();
    loop {
        let t = titles(conn, root);
        if let Some(hit) = t.iter().find(|t| pred(t)) {
            return Ok(hit.clone());
        }
        if start.elapsed() > timeout {
            return Err(t);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_unicode_arrives_in_chromium() {
    let x = Xvfb::start(1024, 768);
    let dir = std::env::temp_dir().join(format!("zigral-desktop-chromium-{}", x.display));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let page = dir.join("t.html");
    std::fs::write(
        &page,
        "<!doctype html><meta charset=utf-8><title>ready</title>\
         <textarea id=t autofocus style='position:fixed;inset:0;width:100%;height:100%;font-size:30px'\
         oninput='document.title=\"T:\"+this.value'></textarea>",
    )
    .expect("page");
    let mut cmd = Command::new("chromium");
    cmd.env("DISPLAY", format!(":{}", x.display))
        .args([
            "--no-sandbox",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-position=0,0",
            "--window-size=1024,768",
            &format!("--user-data-dir={}", dir.join("chrome").display()),
            &format!("file://{}", page.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _chrome = Proc::spawn(cmd);

    let (conn, screen) = x11rb::connect(Some(&format!(":{}", x.display))).expect("connect");
    let root = conn.setup().roots[screen].root;
    wait_for(
        Duration::from_secs(90),
        "chromium window titled 'ready'",
        || {
            titles(&conn, root)
                .iter()
                .any(|t| t.starts_with("ready"))
                .then_some(())
        },
    );
    let d = Desktop::connect(&format!(":{}", x.display)).expect("desktop");
    // Focus the textarea (it fills the page) by clicking in the middle of the window, until a
    // probe key shows up (the renderer may still be starting after the title appears).
    let mut focused = false;
    for _ in 0..60 {
        d.click_at(512, 500, Button::Left, 1).await.expect("click");
        d.type_text("x", None).await.expect("probe");
        if wait_title_for(&conn, root, Duration::from_millis(500), |t| {
            t.starts_with("T:x")
        })
        .is_ok()
        {
            focused = true;
            break;
        }
    }
    assert!(
        focused,
        "chromium never received keys: {:?}",
        titles(&conn, root)
    );
    d.key("ctrl+a BackSpace").await.expect("clear");
    let got = wait_title(&conn, root, |t| t == "T:" || t.starts_with("T: "));
    assert!(got.is_ok(), "textarea not emptied: {got:?}");

    let mut expected = String::new();
    let many: String = (0..(d.info().spare_keycodes as u32 + 6))
        .map(|i| char::from_u32(0x4e00 + i * 11).expect("cjk"))
        .collect();
    let again: String = many.chars().rev().take(8).collect();
    for (i, chunk) in [
        "Hello, World! ~!@#$%^&*()_+{}|:\"<>?".to_string(),
        " héllo ✓ 日本語 Ωμέγα 😀 naïve".to_string(),
        // more distinct characters than spare keycodes: keycodes get reused mid-text
        format!(" {many}"),
        // after the keymap was restored: old and new characters on reused keycodes
        format!(" ✓ Ω {again} 😀 ŝŷ"),
    ]
    .into_iter()
    .enumerate()
    {
        if i == 3 {
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        d.type_text(&chunk, None).await.expect("type");
        expected.push_str(&chunk);
        let want = format!("T:{expected}");
        let got = wait_title(&conn, root, |t| t.starts_with(&want));
        assert!(
            got.is_ok(),
            "expected a title starting with {want:?}, windows: {got:?}"
        );
    }
    // Key combos reach Chromium too: select all and delete empties the textarea.
    d.key("ctrl+a BackSpace").await.expect("keys");
    let got = wait_title(&conn, root, |t| t == "T:" || t.starts_with("T: "));
    assert!(got.is_ok(), "textarea not emptied: {got:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
