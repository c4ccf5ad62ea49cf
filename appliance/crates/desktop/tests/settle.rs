//! `Desktop::settle` against a real Xvfb, with another X client drawing on the root window:
//! settle waits until the drawing stops plus the quiet window, returns after about the quiet
//! window when nothing changes, gives up at the cap when the drawing never stops, ignores a
//! blinking caret, and does not hold up other actions meanwhile.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use zigral_desktop::{Desktop, DesktopError, ImageFormat, ScreenshotOpts};
use zigral_tests::{Xvfb, wait_for};

use common::xvfb_with;

const QUIET: Duration = Duration::from_millis(100);

/// Another X client filling a rectangle of the root window in alternating colours.
struct Painter {
    stop: Arc<AtomicBool>,
    draws: Arc<AtomicU32>,
    /// When the last fill request was sent (before sending: the damage comes after it).
    last: Arc<Mutex<Option<Instant>>>,
    thread: Option<JoinHandle<()>>,
}

impl Painter {
    /// Paints `rect` every `every` for `duration` (`None`: until dropped).
    fn start(
        display: u32,
        rect: xproto::Rectangle,
        every: Duration,
        duration: Option<Duration>,
    ) -> Painter {
        let (conn, screen) = x11rb::connect(Some(&format!(":{display}"))).expect("painter connect");
        let root = conn.setup().roots[screen].root;
        let gc = conn.generate_id().expect("gc id");
        conn.create_gc(gc, root, &xproto::CreateGCAux::new())
            .expect("create gc")
            .check()
            .expect("gc");
        let stop = Arc::new(AtomicBool::new(false));
        let draws = Arc::new(AtomicU32::new(0));
        let last = Arc::new(Mutex::new(None));
        let (s, d, l) = (stop.clone(), draws.clone(), last.clone());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut i = 0u32;
            while !s.load(Ordering::SeqCst) && duration.is_none_or(|t| start.elapsed() < t) {
                let colour = if i.is_multiple_of(2) {
                    0x00ff_0000
                } else {
                    0x0000_ff00
                };
                *l.lock().expect("lock") = Some(Instant::now());
                // The server has drawn (and reported the damage) before we count.
                common::fill(&conn, root, gc, colour, rect);
                d.fetch_add(1, Ordering::SeqCst);
                i += 1;
                std::thread::sleep(every);
            }
        });
        Painter {
            stop,
            draws,
            last,
            thread: Some(thread),
        }
    }

    fn wait_started(&self) {
        wait_for(Duration::from_secs(10), "painter to draw", || {
            (self.draws.load(Ordering::SeqCst) > 0).then_some(())
        });
    }

    /// Waits for the painter to finish; when it last drew.
    fn join(mut self) -> Instant {
        if let Some(t) = self.thread.take() {
            t.join().expect("painter thread");
        }
        self.last.lock().expect("lock").expect("painter drew")
    }
}

impl Drop for Painter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn rect(x: i16, y: i16, width: u16, height: u16) -> xproto::Rectangle {
    xproto::Rectangle {
        x,
        y,
        width,
        height,
    }
}

fn setup() -> (Xvfb, Desktop) {
    let x = Xvfb::start(800, 600);
    let d = Desktop::connect(&format!(":{}", x.display)).expect("connect");
    (x, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_still_screen_settles_after_the_quiet_window() {
    let (_x, d) = setup();
    for _ in 0..3 {
        let t = Instant::now();
        let s = d
            .settle(QUIET, Duration::from_millis(1500))
            .await
            .expect("settle");
        let took = t.elapsed();
        assert!(!s.capped, "{s:?}");
        assert_eq!(s.damage_events, 0, "{s:?}");
        assert!(s.waited >= QUIET && took >= QUIET, "{s:?} {took:?}");
        assert!(took < QUIET + Duration::from_millis(250), "{s:?} {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_waits_for_drawing_to_stop_plus_the_quiet_window() {
    let (x, d) = setup();
    let cap = Duration::from_millis(1500);
    let p = Painter::start(
        x.display,
        rect(100, 100, 300, 200),
        Duration::from_millis(10),
        Some(Duration::from_millis(300)),
    );
    p.wait_started();
    let t = Instant::now();
    let s = d.settle(QUIET, cap).await.expect("settle");
    let end = Instant::now();
    let last_draw = p.join();
    assert!(!s.capped, "{s:?}");
    assert!(s.damage_events >= 5, "saw the drawing: {s:?}");
    // Not before: the last change plus a full quiet window.
    assert!(
        end >= last_draw + QUIET,
        "returned {:?} after the last draw",
        end.saturating_duration_since(last_draw)
    );
    // Not at the cap: soon after the quiet window.
    assert!(
        end < last_draw + QUIET + Duration::from_millis(300),
        "returned {:?} after the last draw",
        end - last_draw
    );
    assert!(end - t < cap, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_drawing_returns_at_the_cap_without_blocking_other_actions() {
    let (x, d) = setup();
    let cap = Duration::from_millis(1000);
    let p = Painter::start(
        x.display,
        rect(0, 0, 400, 300),
        Duration::from_millis(15),
        None,
    );
    p.wait_started();
    let d2 = d.clone();
    let t = Instant::now();
    let settling = tokio::spawn(async move { d2.settle(QUIET, cap).await });
    // Meanwhile the owner connection serves a screenshot without waiting for the settle.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let st = Instant::now();
    let shot = d
        .screenshot(ScreenshotOpts {
            format: ImageFormat::Jpeg { quality: 50 },
            ..Default::default()
        })
        .await
        .expect("screenshot");
    let shot_took = st.elapsed();
    let s = settling.await.expect("task").expect("settle");
    let took = t.elapsed();
    drop(p);
    assert!(s.capped, "{s:?}");
    assert!(s.waited >= cap && took >= cap, "{s:?} {took:?}");
    assert!(took < cap + Duration::from_millis(300), "{took:?}");
    assert!(s.damage_events >= 10, "{s:?}");
    assert_eq!(shot.width, 800);
    assert!(
        shot_took < Duration::from_millis(500),
        "screenshot waited for the settle: {shot_took:?}"
    );
    assert!(
        st + shot_took < t + took,
        "the screenshot finished during the settle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blinking_caret_does_not_keep_the_screen_unsettled() {
    let (x, d) = setup();
    // Chrome's caret repaints a 1x17 rectangle; blink it much faster than Chrome does.
    let p = Painter::start(
        x.display,
        rect(50, 50, 1, 17),
        Duration::from_millis(20),
        None,
    );
    p.wait_started();
    let t = Instant::now();
    let s = d
        .settle(QUIET, Duration::from_millis(1000))
        .await
        .expect("settle");
    let took = t.elapsed();
    drop(p);
    assert!(!s.capped, "{s:?}");
    assert!(s.ignored_events >= 2, "{s:?}");
    assert_eq!(s.damage_events, 0, "{s:?}");
    assert!(took < QUIET + Duration::from_millis(250), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settle_arguments_are_rejected() {
    let (_x, d) = setup();
    let e = d
        .settle(Duration::from_secs(2), Duration::from_secs(1))
        .await
        .expect_err("quiet > cap");
    assert!(matches!(e, DesktopError::InvalidArgument(_)), "{e:?}");
    let e = d
        .settle(QUIET, Duration::from_secs(61))
        .await
        .expect_err("cap too long");
    assert!(matches!(e, DesktopError::InvalidArgument(_)), "{e:?}");
    // A zero quiet window returns at once.
    let s = d.settle(Duration::ZERO, QUIET).await.expect("settle");
    assert!(!s.capped && s.waited < QUIET, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_uses_the_desktops_cookie_and_reports_a_missing_damage_extension() {
    // A server that requires a cookie: the settle connection must authenticate like the
    // owner's (desktops spawned by zigral-init each have their own cookie file).
    let dir = std::env::temp_dir().join(format!("zigral-settle-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let auth = dir.join("Xauthority");
    let mut entry = vec![0xff, 0xff]; // FamilyWild, any display number
    for f in [&b""[..], b"", b"MIT-MAGIC-COOKIE-1", &[7u8; 16]] {
        entry.extend_from_slice(&(f.len() as u16).to_be_bytes());
        entry.extend_from_slice(f);
    }
    std::fs::write(&auth, &entry).expect("write cookie");
    let (_p, display) = xvfb_with(&["-auth", auth.to_str().expect("utf-8 path")]);
    let name = format!(":{display}");
    assert!(
        Desktop::connect(&name).is_err(),
        "the server must refuse clients without the cookie"
    );
    let d = Desktop::connect_with_xauthority(&name, Some(&auth)).expect("connect with cookie");
    let s = d
        .settle(QUIET, Duration::from_secs(1))
        .await
        .expect("settle");
    assert!(!s.capped && s.damage_events == 0, "{s:?}");
    let _ = std::fs::remove_dir_all(&dir);

    let (_p2, display) = xvfb_with(&["-extension", "DAMAGE"]);
    let d = Desktop::connect(&format!(":{display}")).expect("connect");
    let e = d
        .settle(QUIET, Duration::from_secs(1))
        .await
        .expect_err("no DAMAGE");
    assert!(
        matches!(e, DesktopError::MissingExtension { name: "DAMAGE", .. }),
        "{e:?}"
    );
    assert!(!e.is_connection_lost(), "{e}");
    // The owner connection is unaffected.
    d.screenshot(ScreenshotOpts::default())
        .await
        .expect("screenshot");
}
