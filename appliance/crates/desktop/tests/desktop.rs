//! End-to-end tests of zigral-desktop against a real Xvfb, observed by a real X client window.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;
use zigral_desktop::{
    Action, ActionOutput, Button, Desktop, DesktopError, ImageFormat, Point, Rect, ScreenshotOpts,
    ScrollDirection, Size, keysym_from_name, keysym_to_char,
};
use zigral_tests::{Proc, Xvfb, wait_for};

use common::xvfb_with;

const T: Duration = Duration::from_secs(20);

/// What the observer window saw.
#[derive(Debug, Clone, PartialEq)]
enum Rec {
    Motion {
        x: i16,
        y: i16,
    },
    Button {
        down: bool,
        button: u8,
        x: i16,
        y: i16,
        state: u16,
    },
    Key {
        down: bool,
        keysym: u32,
        state: u16,
        time: u32,
    },
}

/// A full-screen X window in its own connection and thread that records input events and
/// decodes keysyms with the keymap current when each event is processed (re-read on every
/// MappingNotify, as real toolkits do).
struct Observer {
    conn: Arc<RustConnection>,
    win: u32,
    gc: u32,
    recs: Arc<Mutex<Vec<Rec>>>,
}

fn load_keymap(conn: &RustConnection) -> (u8, usize, Vec<u32>) {
    let (min, max) = (conn.setup().min_keycode, conn.setup().max_keycode);
    let r = conn
        .get_keyboard_mapping(min, max - min + 1)
        .expect("req")
        .reply()
        .expect("keymap");
    (min, usize::from(r.keysyms_per_keycode), r.keysyms)
}

impl Observer {
    fn start(display: u32) -> Observer {
        let (conn, screen) =
            x11rb::connect(Some(&format!(":{display}"))).expect("connect observer");
        let conn = Arc::new(conn);
        let s = conn.setup().roots[screen].clone();
        let win = conn.generate_id().expect("id");
        let mask = xproto::EventMask::KEY_PRESS
            | xproto::EventMask::KEY_RELEASE
            | xproto::EventMask::BUTTON_PRESS
            | xproto::EventMask::BUTTON_RELEASE
            | xproto::EventMask::POINTER_MOTION
            | xproto::EventMask::STRUCTURE_NOTIFY
            | xproto::EventMask::EXPOSURE;
        conn.create_window(
            s.root_depth,
            win,
            s.root,
            0,
            0,
            s.width_in_pixels,
            s.height_in_pixels,
            0,
            xproto::WindowClass::INPUT_OUTPUT,
            s.root_visual,
            &xproto::CreateWindowAux::new()
                .background_pixel(s.white_pixel)
                .override_redirect(1)
                .event_mask(mask),
        )
        .expect("create");
        let gc = conn.generate_id().expect("id");
        conn.create_gc(gc, win, &xproto::CreateGCAux::new())
            .expect("gc");
        conn.map_window(win).expect("map");
        conn.flush().expect("flush");
        // Wait until mapped, then take the focus.
        loop {
            if let Event::MapNotify(_) = conn.wait_for_event().expect("event") {
                break;
            }
        }
        conn.set_input_focus(xproto::InputFocus::PARENT, win, x11rb::CURRENT_TIME)
            .expect("focus");
        conn.sync().expect("sync");
        let recs = Arc::new(Mutex::new(Vec::new()));
        let (c2, r2) = (conn.clone(), recs.clone());
        std::thread::spawn(move || {
            let mut km = load_keymap(&c2);
            while let Ok(ev) = c2.wait_for_event() {
                let rec = match ev {
                    Event::MappingNotify(_) => {
                        km = load_keymap(&c2);
                        continue;
                    }
                    Event::MotionNotify(e) => Rec::Motion {
                        x: e.event_x,
                        y: e.event_y,
                    },
                    Event::ButtonPress(e) | Event::ButtonRelease(e) => Rec::Button {
                        down: e.response_type & 0x7f == xproto::BUTTON_PRESS_EVENT,
                        button: e.detail,
                        x: e.event_x,
                        y: e.event_y,
                        state: e.state.into(),
                    },
                    Event::KeyPress(e) | Event::KeyRelease(e) => {
                        let (min, per, syms) = &km;
                        let base = usize::from(e.detail - min) * per;
                        let shift = u16::from(e.state) & 1 != 0;
                        let l0 = syms[base];
                        let l1 = syms[base + 1];
                        let mut ks = if shift && l1 != 0 { l1 } else { l0 };
                        if shift && l1 == 0 && (0x61..=0x7a).contains(&l0) {
                            ks = l0 - 0x20;
                        }
                        Rec::Key {
                            down: e.response_type & 0x7f == xproto::KEY_PRESS_EVENT,
                            keysym: ks,
                            state: e.state.into(),
                            time: e.time,
                        }
                    }
                    _ => continue,
                };
                r2.lock().expect("lock").push(rec);
            }
        });
        Observer {
            conn,
            win,
            gc,
            recs,
        }
    }

    fn take(&self) -> Vec<Rec> {
        std::mem::take(&mut *self.recs.lock().expect("lock"))
    }

    /// Waits until `pred` holds on the records so far; returns them (and clears).
    fn wait(&self, what: &str, pred: impl Fn(&[Rec]) -> bool) -> Vec<Rec> {
        wait_for(T, what, || {
            let r = self.recs.lock().expect("lock");
            pred(&r).then_some(())
        });
        self.take()
    }

    /// Text decoded from the KeyPress events recorded (modifier keys produce nothing).
    fn typed(recs: &[Rec]) -> String {
        recs.iter()
            .filter_map(|r| match r {
                Rec::Key {
                    down: true, keysym, ..
                } => keysym_to_char(*keysym),
                _ => None,
            })
            .collect()
    }

    fn fill(&self, r: Rect, rgb: (u8, u8, u8)) {
        let pixel = (u32::from(rgb.0) << 16) | (u32::from(rgb.1) << 8) | u32::from(rgb.2);
        let r = xproto::Rectangle {
            x: r.x as i16,
            y: r.y as i16,
            width: r.width as u16,
            height: r.height as u16,
        };
        common::fill(&self.conn, self.win, self.gc, pixel, r);
    }
}

trait SyncExt {
    fn sync(&self) -> Result<(), x11rb::errors::ReplyError>;
}
impl SyncExt for RustConnection {
    fn sync(&self) -> Result<(), x11rb::errors::ReplyError> {
        self.get_input_focus()?.reply().map(|_| ())
    }
}

fn setup(w: u32, h: u32) -> (Xvfb, Observer, Desktop) {
    let x = Xvfb::start(w, h);
    let obs = Observer::start(x.display);
    let d = Desktop::connect(&format!(":{}", x.display)).expect("connect");
    (x, obs, d)
}

fn ks(name: &str) -> u32 {
    keysym_from_name(name).expect("name")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pointer_actions_produce_the_expected_events() {
    let (_x, obs, d) = setup(800, 600);
    assert!(d.info().xtest.0 >= 2);
    assert_eq!(
        d.info().size,
        Size {
            width: 800,
            height: 600
        }
    );

    d.move_to(100, 120).await.expect("move");
    let r = obs.wait("motion", |r| r.contains(&Rec::Motion { x: 100, y: 120 }));
    assert_eq!(r.last(), Some(&Rec::Motion { x: 100, y: 120 }));
    assert_eq!(
        d.cursor_position().await.expect("pos"),
        Point { x: 100, y: 120 }
    );

    let buttons = |r: &[Rec]| -> Vec<(bool, u8, i16, i16)> {
        r.iter()
            .filter_map(|e| match e {
                Rec::Button {
                    down, button, x, y, ..
                } => Some((*down, *button, *x, *y)),
                _ => None,
            })
            .collect()
    };
    for (b, n) in [(Button::Left, 1u8), (Button::Middle, 2), (Button::Right, 3)] {
        d.click(b, 1).await.expect("click");
        let r = obs.wait("click", |r| buttons(r).len() == 2);
        assert_eq!(buttons(&r), [(true, n, 100, 120), (false, n, 100, 120)]);
    }
    // Double and triple click at a position.
    d.click_at(300, 200, Button::Left, 2).await.expect("double");
    let r = obs.wait("double", |r| buttons(r).len() == 4);
    assert_eq!(
        buttons(&r),
        [(true, 1, 300, 200), (false, 1, 300, 200)].repeat(2)
    );
    d.click_at(310, 210, Button::Left, 3).await.expect("triple");
    let r = obs.wait("triple", |r| buttons(r).len() == 6);
    assert_eq!(
        buttons(&r),
        [(true, 1, 310, 210), (false, 1, 310, 210)].repeat(3)
    );

    // Scroll in all four directions, at a position.
    for (dir, b) in [
        (ScrollDirection::Up, 4u8),
        (ScrollDirection::Down, 5),
        (ScrollDirection::Left, 6),
        (ScrollDirection::Right, 7),
    ] {
        d.scroll(dir, 3, Some(Point { x: 50, y: 60 }))
            .await
            .expect("scroll");
        let r = obs.wait("scroll", |r| buttons(r).len() == 6);
        assert_eq!(
            buttons(&r),
            [(true, b, 50, 60), (false, b, 50, 60)].repeat(3)
        );
    }

    // Button down / up separately, with the held button visible in motion state.
    d.button_down(Button::Right).await.expect("down");
    d.move_to(70, 80).await.expect("move");
    d.button_up(Button::Right).await.expect("up");
    let r = obs.wait("down/up", |r| buttons(r).len() == 2);
    assert_eq!(buttons(&r), [(true, 3, 50, 60), (false, 3, 70, 80)]);

    // Drag through an intermediate point.
    d.drag(
        Point { x: 10, y: 10 },
        Point { x: 400, y: 300 },
        &[Point { x: 200, y: 20 }],
    )
    .await
    .expect("drag");
    let r = obs.wait("drag", |r| buttons(r).len() == 2);
    assert_eq!(buttons(&r), [(true, 1, 10, 10), (false, 1, 400, 300)]);
    let motions: Vec<&Rec> = r
        .iter()
        .filter(|e| matches!(e, Rec::Motion { .. }))
        .collect();
    assert!(
        motions.contains(&&Rec::Motion { x: 200, y: 20 }),
        "{motions:?}"
    );
    // Every motion between press and release happens with button 1 held (state has Button1Mask).
    let press = r
        .iter()
        .position(|e| matches!(e, Rec::Button { down: true, .. }))
        .expect("p");
    let release = r
        .iter()
        .position(|e| matches!(e, Rec::Button { down: false, .. }))
        .expect("r");
    assert!(
        release - press > 3,
        "drag should send intermediate motions: {r:?}"
    );
    if let Rec::Button { state, .. } = &r[release] {
        assert_ne!(state & 0x100, 0, "button 1 held during the drag");
    }

    // Out of bounds: typed error, no event.
    let e = d.move_to(800, 10).await.expect_err("oob");
    assert!(matches!(e, DesktopError::OutOfBounds { .. }), "{e}");
    assert!(e.to_string().contains("800x600"), "{e}");
    let e = d.click_at(-1, 5, Button::Left, 1).await.expect_err("oob");
    assert!(matches!(e, DesktopError::OutOfBounds { .. }));
    let e = d.click(Button::Left, 0).await.expect_err("count");
    assert!(matches!(e, DesktopError::InvalidArgument(_)), "{e}");
    d.move_to(1, 1).await.expect("move");
    let r = obs.wait("last move", |r| r.contains(&Rec::Motion { x: 1, y: 1 }));
    assert!(
        buttons(&r).is_empty(),
        "failed actions must not click: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_combos_produce_keysyms_and_modifiers() {
    let (_x, obs, d) = setup(640, 480);
    let keys = |r: &[Rec]| -> Vec<(bool, u32, u16)> {
        r.iter()
            .filter_map(|e| match e {
                Rec::Key {
                    down,
                    keysym,
                    state,
                    ..
                } => Some((*down, *keysym, *state)),
                _ => None,
            })
            .collect()
    };
    const SHIFT: u16 = 1;
    const CTRL: u16 = 4;
    d.key("ctrl+shift+t").await.expect("combo");
    let r = obs.wait("combo", |r| keys(r).len() == 6);
    let k = keys(&r);
    assert_eq!(
        k.iter().map(|(d, s, _)| (*d, *s)).collect::<Vec<_>>(),
        [
            (true, ks("Control_L")),
            (true, ks("Shift_L")),
            (true, ks("T")), // observer decodes with Shift held
            (false, ks("T")),
            (false, ks("Shift_L")),
            (false, ks("Control_L")),
        ]
    );
    assert_eq!(
        k[2].2 & (SHIFT | CTRL),
        SHIFT | CTRL,
        "t pressed with ctrl+shift held"
    );

    for (name, sym) in [
        ("Return", "Return"),
        ("enter", "Return"),
        ("esc", "Escape"),
        ("BackSpace", "BackSpace"),
        ("F5", "F5"),
        ("Page_Down", "Next"),
        ("pgup", "Prior"),
        ("super", "Super_L"),
        ("cmd", "Super_L"),
        ("alt", "Alt_L"),
        ("Delete", "Delete"),
    ] {
        d.key(name).await.expect(name);
        let r = obs.wait(name, |r| keys(r).len() == 2);
        assert_eq!(
            keys(&r)
                .iter()
                .map(|(d, s, _)| (*d, *s))
                .collect::<Vec<_>>(),
            [(true, ks(sym)), (false, ks(sym))],
            "{name}"
        );
    }

    // An uppercase letter adds Shift like xdotool; a sequence runs combo after combo.
    d.key("ctrl+A Down").await.expect("seq");
    let r = obs.wait("seq", |r| keys(r).len() == 8);
    let downs: Vec<u32> = keys(&r).iter().filter(|k| k.0).map(|k| k.1).collect();
    assert_eq!(downs, [ks("Control_L"), ks("Shift_L"), ks("A"), ks("Down")]);

    // A key absent from the keymap (a media key) goes through a spare keycode.
    d.key("XF86AudioMute").await.expect("media");
    let r = obs.wait("media", |r| keys(r).len() == 2);
    assert_eq!(keys(&r)[0].1, ks("XF86AudioMute"));

    // Hold a key: press, then release no earlier than the duration.
    d.hold_key("shift", Duration::from_millis(300))
        .await
        .expect("hold");
    let r = obs.wait("hold", |r| keys(r).len() == 2);
    let times: Vec<u32> = r
        .iter()
        .filter_map(|e| match e {
            Rec::Key { time, .. } => Some(*time),
            _ => None,
        })
        .collect();
    assert!(
        times[1] - times[0] >= 280,
        "held {} ms",
        times[1] - times[0]
    );

    // A cancelled hold still releases its keys (modifiers: they do not autorepeat).
    let d2 = d.clone();
    let task =
        tokio::spawn(async move { d2.hold_key("ctrl+shift", Duration::from_secs(30)).await });
    let r = obs.wait("hold started", |r| keys(r).len() == 2);
    assert!(keys(&r).iter().all(|k| k.0), "{r:?}");
    task.abort();
    let r = obs.wait("released on cancel", |r| keys(r).len() == 2);
    assert_eq!(
        keys(&r).iter().map(|k| (k.0, k.1)).collect::<Vec<_>>(),
        [(false, ks("Shift_L")), (false, ks("Control_L"))]
    );

    // key_down / key_up pair.
    d.key_down("ctrl").await.expect("down");
    d.key("c").await.expect("c");
    d.key_up("ctrl").await.expect("up");
    let r = obs.wait("down-up", |r| keys(r).len() == 4);
    let k = keys(&r);
    assert_eq!(k[1].1, ks("c"));
    assert_ne!(k[1].2 & CTRL, 0);

    // Bad names: typed error with a suggestion, nothing pressed.
    let e = d.key("ctrl+retrun").await.expect_err("bad");
    match &e {
        DesktopError::BadKeyName { name, suggestion } => {
            assert_eq!(name, "retrun");
            assert_eq!(suggestion.as_deref(), Some("return"));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("did you mean"), "{e}");
    let e = d
        .hold_key("shift+nokey", Duration::from_millis(10))
        .await
        .expect_err("bad");
    assert!(matches!(e, DesktopError::BadKeyName { .. }));
    d.key("a").await.expect("a");
    let r = obs.wait("a", |r| keys(r).len() == 2);
    assert_eq!(keys(&r)[0].1, ks("a"), "nothing else was pressed: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_unicode_matches_and_restores_the_keymap() {
    let (x, obs, d) = setup(640, 480);
    let (conn, _) = x11rb::connect(Some(&format!(":{}", x.display))).expect("connect");
    let before = load_keymap(&conn);
    assert!(d.info().spare_keycodes >= 4, "{:?}", d.info());

    for text in [
        "Hello, World! 0123456789 ~`!@#$%^&*()_+-={}[]|\\:;\"'<>,.?/",
        "héllo",
        "✓",
        "日本語",
        "Ωμέγα 😀 naïve café ÀÉÎÕÜ",
        "tab\tand newline\n",
    ] {
        d.type_text(text, None).await.expect("type");
        let want = text.chars().count();
        let r = obs.wait(text, |r| Observer::typed(r).chars().count() >= want);
        assert_eq!(Observer::typed(&r), text);
    }

    // More distinct new characters than spare keycodes: typed in rounds, still exact.
    let many: String = (0..(d.info().spare_keycodes as u32 + 12))
        .map(|i| char::from_u32(0x4e00 + i * 7).expect("cjk"))
        .collect::<String>()
        + "日本語";
    d.type_text(&many, None).await.expect("type many");
    let want = many.chars().count();
    let r = obs.wait("many", |r| Observer::typed(r).chars().count() >= want);
    assert_eq!(Observer::typed(&r), many);

    // With a per-character delay.
    let t0 = Instant::now();
    d.type_text("ab✓", Some(Duration::from_millis(50)))
        .await
        .expect("delay");
    assert!(t0.elapsed() >= Duration::from_millis(140));
    let r = obs.wait("delay", |r| Observer::typed(r).chars().count() >= 3);
    assert_eq!(Observer::typed(&r), "ab✓");

    // The keymap is restored after the restore delay.
    wait_for(T, "keymap restored", || {
        (load_keymap(&conn) == before).then_some(())
    });

    // Control characters are refused up front; nothing is typed.
    let e = d.type_text("ok\u{7}", None).await.expect_err("bell");
    assert!(
        matches!(
            e,
            DesktopError::BadText {
                index: 2,
                codepoint: 7,
                ..
            }
        ),
        "{e}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(obs.take().is_empty());
}

fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut r = dec.read_info().expect("png");
    let mut buf = vec![0; r.output_buffer_size().expect("size")];
    let info = r.next_frame(&mut buf).expect("frame");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn decode_jpeg(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut d = jpeg_decoder::Decoder::new(bytes);
    let px = d.decode().expect("jpeg");
    let info = d.info().expect("info");
    assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
    (u32::from(info.width), u32::from(info.height), px)
}

fn decode_webp(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut d = image_webp::WebPDecoder::new(std::io::Cursor::new(bytes)).expect("webp");
    let (w, h) = d.dimensions();
    assert!(!d.has_alpha());
    let mut buf = vec![0; d.output_buffer_size().expect("size")];
    d.read_image(&mut buf).expect("read");
    (w, h, buf)
}

fn px(img: &(u32, u32, Vec<u8>), x: u32, y: u32) -> (u8, u8, u8) {
    let i = ((y * img.0 + x) * 3) as usize;
    (img.2[i], img.2[i + 1], img.2[i + 2])
}

fn close(a: (u8, u8, u8), b: (u8, u8, u8), tol: i32) -> bool {
    (i32::from(a.0) - i32::from(b.0)).abs() <= tol
        && (i32::from(a.1) - i32::from(b.1)).abs() <= tol
        && (i32::from(a.2) - i32::from(b.2)).abs() <= tol
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_show_painted_pixels_in_every_format() {
    let (_x, obs, d) = setup(800, 600);
    let red = Rect {
        x: 50,
        y: 40,
        width: 200,
        height: 100,
    };
    let green = Rect {
        x: 400,
        y: 300,
        width: 120,
        height: 80,
    };
    let blue = Rect {
        x: 600,
        y: 100,
        width: 64,
        height: 64,
    };
    obs.fill(red, (255, 0, 0));
    obs.fill(green, (0, 200, 0));
    obs.fill(blue, (10, 20, 250));
    let centre = |r: Rect| (r.x as u32 + r.width / 2, r.y as u32 + r.height / 2);
    let expect = [
        (red, (255, 0, 0)),
        (green, (0, 200, 0)),
        (blue, (10, 20, 250)),
    ];

    for (format, tol, decode) in [
        (
            ImageFormat::Png,
            0,
            decode_png as fn(&[u8]) -> (u32, u32, Vec<u8>),
        ),
        (ImageFormat::Jpeg { quality: 80 }, 24, decode_jpeg),
        (ImageFormat::Webp, 0, decode_webp),
    ] {
        let s = d
            .screenshot(ScreenshotOpts {
                format,
                ..Default::default()
            })
            .await
            .expect("shot");
        assert_eq!(s.mime, format.mime());
        assert_eq!((s.width, s.height), (800, 600));
        assert!(s.scale.is_identity());
        let img = decode(&s.bytes);
        assert_eq!((img.0, img.1), (800, 600));
        for (r, rgb) in expect {
            let (cx, cy) = centre(r);
            assert!(
                close(px(&img, cx, cy), rgb, tol),
                "{format:?} {:?} != {rgb:?}",
                px(&img, cx, cy)
            );
            // a pixel just outside the rectangle is the white background
            assert!(
                close(px(&img, r.x as u32 - 3, cy), (255, 255, 255), tol),
                "{format:?}"
            );
        }
        // Exact edges for lossless formats.
        if tol == 0 {
            assert_eq!(px(&img, red.x as u32, red.y as u32), (255, 0, 0));
            assert_eq!(px(&img, red.x as u32 - 1, red.y as u32), (255, 255, 255));
            assert_eq!(
                px(
                    &img,
                    red.x as u32 + red.width - 1,
                    red.y as u32 + red.height - 1
                ),
                (255, 0, 0)
            );
        }
    }

    // A region is exactly that part of the screen.
    let s = d
        .screenshot(ScreenshotOpts {
            region: Some(Rect {
                x: 40,
                y: 30,
                width: 100,
                height: 50,
            }),
            ..Default::default()
        })
        .await
        .expect("region");
    let img = decode_png(&s.bytes);
    assert_eq!((img.0, img.1), (100, 50));
    assert_eq!(px(&img, 9, 9), (255, 255, 255));
    assert_eq!(px(&img, 10, 10), (255, 0, 0));
    assert_eq!(
        s.scale.to_screen(Point { x: 10, y: 10 }),
        Point { x: 50, y: 40 }
    );

    // Scaled to XGA: rectangles land where the mapping says, and points round-trip.
    let s = d
        .screenshot(ScreenshotOpts {
            scale: Some(Size {
                width: 1024,
                height: 768,
            }),
            format: ImageFormat::Png,
            ..Default::default()
        })
        .await
        .expect("scaled");
    assert_eq!((s.width, s.height), (1024, 768));
    let img = decode_png(&s.bytes);
    for (r, rgb) in expect {
        let (cx, cy) = centre(r);
        let p = s
            .scale
            .to_image(Point {
                x: cx as i32,
                y: cy as i32,
            })
            .expect("inside");
        assert_eq!(px(&img, p.x as u32, p.y as u32), rgb);
        let back = s.scale.to_screen(p);
        assert!(
            (back.x - cx as i32).abs() <= 1 && (back.y - cy as i32).abs() <= 1,
            "{back:?}"
        );
    }
    let down = d
        .screenshot(ScreenshotOpts {
            scale: Some(Size {
                width: 400,
                height: 300,
            }),
            format: ImageFormat::Webp,
            ..Default::default()
        })
        .await
        .expect("down");
    let img = decode_webp(&down.bytes);
    assert_eq!((img.0, img.1), (400, 300));
    for (r, rgb) in expect {
        let (cx, cy) = centre(r);
        let p = down
            .scale
            .to_image(Point {
                x: cx as i32,
                y: cy as i32,
            })
            .expect("inside");
        assert!(close(px(&img, p.x as u32, p.y as u32), rgb, 2));
    }
    // Every image pixel maps to a screen pixel that maps back to it (downscale round trip).
    for (ix, iy) in [(0, 0), (399, 299), (123, 45), (200, 150)] {
        let q = Point { x: ix, y: iy };
        assert_eq!(down.scale.to_image(down.scale.to_screen(q)), Some(q));
    }
    assert_eq!(down.scale.to_image(Point { x: 800, y: 0 }), None);

    // Cursor overlay changes pixels around the pointer on a white area, and only then.
    d.move_to(300, 500).await.expect("move");
    let region = Some(Rect {
        x: 280,
        y: 480,
        width: 40,
        height: 40,
    });
    let plain = d.capture(region, false).await.expect("plain");
    let with = d.capture(region, true).await.expect("cursor");
    assert!(plain.bgrx.chunks(4).all(|p| p[..3] == [255, 255, 255]));
    if d.info().xfixes.is_some() {
        assert_ne!(plain.bgrx, with.bgrx, "cursor drawn");
    }

    // Bad regions and arguments are typed errors.
    let e = d
        .screenshot(ScreenshotOpts {
            region: Some(Rect {
                x: 700,
                y: 0,
                width: 200,
                height: 10,
            }),
            ..Default::default()
        })
        .await
        .expect_err("oob");
    assert!(matches!(e, DesktopError::OutOfBounds { .. }), "{e}");
    let e = d
        .screenshot(ScreenshotOpts {
            format: ImageFormat::Jpeg { quality: 0 },
            ..Default::default()
        })
        .await
        .expect_err("q");
    assert!(matches!(e, DesktopError::InvalidArgument(_)), "{e}");
}

fn xclip(display: u32, args: &[&str]) -> Command {
    let mut c = Command::new("xclip");
    c.env("DISPLAY", format!(":{display}")).args(args);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clipboard_round_trips_with_another_client() {
    let (x, _obs, d) = setup(320, 240);
    assert_eq!(d.clipboard_get().await.expect("empty"), "");
    let text = "héllo clipboard ✓ 日本語\nline 2";
    d.clipboard_set(text).await.expect("set");
    assert_eq!(d.clipboard_get().await.expect("own"), text);
    // Another client reads it (UTF8_STRING), and lists the targets.
    let out = xclip(x.display, &["-o", "-selection", "clipboard"])
        .output()
        .expect("xclip");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);
    let out = xclip(
        x.display,
        &["-o", "-selection", "clipboard", "-t", "TARGETS"],
    )
    .output()
    .expect("xclip");
    let targets = String::from_utf8_lossy(&out.stdout);
    assert!(
        targets.contains("UTF8_STRING") && targets.contains("STRING"),
        "{targets}"
    );

    // Another client takes the clipboard: we read its text (small, then INCR-sized).
    for data in [
        "from xclip ✓".to_string(),
        "0123456789abcdef".repeat(160_000),
    ] {
        let path = std::env::temp_dir().join(format!("zigral-clip-{}-{}", x.display, data.len()));
        std::fs::write(&path, &data).expect("write");
        let mut cmd = xclip(x.display, &["-i", "-selection", "clipboard", "-quiet"]);
        cmd.stdout(std::process::Stdio::null());
        cmd.arg(&path);
        let _p = Proc::spawn(cmd);
        let got = wait_for(T, "xclip owns", || {
            let rt = tokio::runtime::Handle::current();
            let d = d.clone();
            let t = std::thread::spawn(move || rt.block_on(d.clipboard_get()))
                .join()
                .expect("join");
            match t {
                Ok(t) if !t.is_empty() && t != text => Some(t),
                _ => None,
            }
        });
        assert_eq!(got.len(), data.len());
        assert_eq!(got, data);
        let _ = std::fs::remove_file(&path);
    }
    // And we can take it back.
    d.clipboard_set("mine again").await.expect("set");
    let out = xclip(x.display, &["-o", "-selection", "clipboard"])
        .output()
        .expect("xclip");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "mine again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_changes_the_screen_size_within_xvfb_limits() {
    let (_x, _obs, d) = setup(1280, 800);
    assert!(d.info().randr.is_some());
    assert_eq!(
        d.resize(1024, 768).await.expect("resize"),
        Size {
            width: 1024,
            height: 768
        }
    );
    assert_eq!(
        d.size().await.expect("size"),
        Size {
            width: 1024,
            height: 768
        }
    );
    let s = d.screenshot(ScreenshotOpts::default()).await.expect("shot");
    assert_eq!((s.width, s.height), (1024, 768));
    // Input bounds follow the new size.
    let e = d.move_to(1100, 10).await.expect_err("oob");
    assert!(
        matches!(e, DesktopError::OutOfBounds { screen_w: 1024, .. }),
        "{e}"
    );
    assert_eq!(
        d.resize(1280, 800).await.expect("back"),
        Size {
            width: 1280,
            height: 800
        }
    );
    d.move_to(1100, 10).await.expect("in bounds again");
    let s = d.screenshot(ScreenshotOpts::default()).await.expect("shot");
    assert_eq!((s.width, s.height), (1280, 800));
    // Beyond Xvfb's framebuffer: a clear error and the size is unchanged.
    let e = d.resize(4000, 3000).await.expect_err("too big");
    assert!(matches!(e, DesktopError::Resize { .. }), "{e}");
    assert!(e.to_string().contains("1280x800"), "{e}");
    assert_eq!(
        d.size().await.expect("size"),
        Size {
            width: 1280,
            height: 800
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_run_in_order_and_stop_at_the_first_failure() {
    let (_x, obs, d) = setup(640, 480);
    let out = d
        .batch(vec![
            Action::MoveTo { x: 10, y: 20 },
            Action::Click {
                at: Some(Point { x: 30, y: 40 }),
                button: Button::Left,
                count: 1,
            },
            Action::TypeText {
                text: "hi✓".into(),
                per_char_delay: None,
            },
            Action::Key {
                keys: "Return".into(),
            },
            Action::CursorPosition,
            Action::Screenshot(ScreenshotOpts {
                format: ImageFormat::Jpeg { quality: 70 },
                ..Default::default()
            }),
            Action::Size,
        ])
        .await
        .expect("batch");
    assert_eq!(out.len(), 7);
    assert_eq!(out[4], ActionOutput::Position(Point { x: 30, y: 40 }));
    assert!(
        matches!(&out[5], ActionOutput::Screenshot(s) if s.mime == "image/jpeg" && s.width == 640)
    );
    assert_eq!(
        out[6],
        ActionOutput::Size(Size {
            width: 640,
            height: 480
        })
    );
    let r = obs.wait("batch", |r| Observer::typed(r) == "hi✓\n");
    assert!(r.contains(&Rec::Motion { x: 10, y: 20 }));

    // Validation failure: nothing runs.
    let e = d
        .batch(vec![
            Action::MoveTo { x: 100, y: 100 },
            Action::Key {
                keys: "ctrl+nosuchkey".into(),
            },
        ])
        .await
        .expect_err("invalid");
    assert_eq!(e.index, 1);
    assert!(e.completed.is_empty());
    assert!(matches!(e.error, DesktopError::BadKeyName { .. }));
    // Runtime failure: what ran before stays done, nothing after runs.
    let e = d
        .batch(vec![
            Action::MoveTo { x: 5, y: 6 },
            Action::MoveTo { x: 5000, y: 6 },
            Action::MoveTo { x: 7, y: 8 },
        ])
        .await
        .expect_err("oob");
    assert_eq!(e.index, 1);
    assert_eq!(e.completed, vec![ActionOutput::Done]);
    assert_eq!(
        d.cursor_position().await.expect("pos"),
        Point { x: 5, y: 6 }
    );
    let r = obs.take();
    assert!(!r.contains(&Rec::Motion { x: 100, y: 100 }));
    assert!(!r.contains(&Rec::Motion { x: 7, y: 8 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_typed() {
    let e = Desktop::connect(":65000").expect_err("no such display");
    assert!(matches!(e, DesktopError::NoDisplay { .. }), "{e}");
    assert!(e.to_string().contains(":65000"), "{e}");
    let e = Desktop::connect("localhost:0").expect_err("not local");
    assert!(matches!(e, DesktopError::NoDisplay { .. }), "{e}");

    let (_p, display) = xvfb_with(&["-extension", "XTEST"]);
    let e = Desktop::connect(&format!(":{display}")).expect_err("no xtest");
    match &e {
        DesktopError::MissingExtension { name, .. } => assert_eq!(*name, "XTEST"),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("XTEST"), "{e}");

    // Without MIT-SHM, RandR and XFixes everything but resize and cursor still works.
    let (_p2, display) = xvfb_with(&[
        "-extension",
        "MIT-SHM",
        "-extension",
        "RANDR",
        "-extension",
        "XFIXES",
    ]);
    let d = Desktop::connect(&format!(":{display}")).expect("connect");
    assert_eq!(
        (d.info().shm, d.info().randr, d.info().xfixes),
        (None, None, None)
    );
    let s = d
        .screenshot(ScreenshotOpts {
            cursor: true,
            ..Default::default()
        })
        .await
        .expect("GetImage fallback");
    assert_eq!((s.width, s.height), (320, 240));
    let e = d.resize(300, 200).await.expect_err("no randr");
    assert!(
        matches!(e, DesktopError::MissingExtension { name: "RANDR", .. }),
        "{e}"
    );
    d.click_at(10, 10, Button::Left, 1).await.expect("click");

    // The X server going away turns into typed errors, not hangs.
    let (p3, display) = xvfb_with(&[]);
    let d = Desktop::connect(&format!(":{display}")).expect("connect");
    d.move_to(5, 5).await.expect("works while up");
    drop(p3);
    let r = tokio::time::timeout(Duration::from_secs(20), async {
        // The first request after the server died may still be buffered; one of a few fails.
        for _ in 0..5 {
            if let Err(e) = d.cursor_position().await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        DesktopError::Protocol("never failed".into())
    })
    .await
    .expect("no hang");
    assert!(
        matches!(r, DesktopError::ConnectionLost(_) | DesktopError::Closed(_)),
        "a dead X server is a lost connection: {r}"
    );
    assert!(r.is_connection_lost(), "{r}");
}
