//! Benchmark: zigral-desktop vs the tools the reference stacks fork per action (xdotool, scrot,
//! scrot + ImageMagick convert), all against one Xvfb 1280x800 this bench starts, showing
//! Chromium on a generated web page (or a painted test pattern when Chromium is absent).
//!
//! Prints `name: value` lines; `_vs_<peer>` lines are ours / peer (below 1 = we are faster) with
//! the speed-up in brackets. Run: `cargo bench -p zigral-desktop --bench desktop`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zigral_desktop::{
    Action, Button, Desktop, ImageFormat, RawImage, ScreenshotOpts, Size, encode,
};
use zigral_tests::{Proc, Xvfb};

const W: u32 = 1280;
const H: u32 = 800;

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One measurement: p50 wall time and mean CPU time (this process plus reaped children:
/// the forked tools) per run, both in ms. CPU time barely depends on machine load.
#[derive(Clone, Copy)]
struct M {
    wall: f64,
    cpu: f64,
}

fn cpu_total_ms() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: an all-zero rusage is a valid value to pass for getrusage to overwrite.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes one rusage into the valid, exclusively borrowed `ru`.
        unsafe { libc::getrusage(who, &mut ru) };
        for tv in [ru.ru_utime, ru.ru_stime] {
            total += tv.tv_sec as f64 * 1e3 + tv.tv_usec as f64 / 1e3;
        }
    }
    total
}

fn runs<F: FnMut()>(n: usize, warm: usize, mut f: F) -> M {
    for _ in 0..warm {
        f();
    }
    let mut v = Vec::with_capacity(n);
    let c0 = cpu_total_ms();
    for _ in 0..n {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let cpu = (cpu_total_ms() - c0) / n as f64;
    M { wall: p50(v), cpu }
}

/// CPU time of the calling thread, in ms (encode-only figures are less sensitive to load).
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

/// p50 wall ms and p50 thread-CPU ms of `f` run in this thread.
fn runs_cpu<F: FnMut()>(n: usize, mut f: F) -> (f64, f64) {
    f();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (t, c) = (Instant::now(), thread_cpu_ms());
        f();
        cpu.push(thread_cpu_ms() - c);
        wall.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (p50(wall), p50(cpu))
}

fn cmd_ms(display: u32, n: usize, program: &str, args: &[&str]) -> Option<M> {
    let run = || {
        Command::new(program)
            .env("DISPLAY", format!(":{display}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !run() {
        println!("# {program} {args:?} failed or is not installed; skipped");
        return None;
    }
    Some(runs(n, 1, || {
        run();
    }))
}

fn report(name: &str, ours: M, peers: &[(&str, Option<M>)]) {
    println!("{name}_p50_us: {:.1}", ours.wall * 1e3);
    println!("{name}_cpu_us: {:.1}", ours.cpu * 1e3);
    for (peer, v) in peers {
        if let Some(p) = v {
            println!("{name}_p50_{peer}_us: {:.1}", p.wall * 1e3);
            println!("{name}_cpu_{peer}_us: {:.1}", p.cpu * 1e3);
            println!(
                "{name}_vs_{peer}: {:.4}x ({:.1}x faster)",
                ours.wall / p.wall,
                p.wall / ours.wall
            );
            println!(
                "{name}_cpu_vs_{peer}: {:.4}x ({:.1}x less CPU)",
                ours.cpu / p.cpu,
                p.cpu / ours.cpu
            );
        }
    }
}

fn page(dir: &Path) -> PathBuf {
    let mut body = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>Zigral bench</title><style>\
         body{font-family:sans-serif;margin:0;background:linear-gradient(135deg,#f5f7fa,#c3cfe2)}\
         header{background:#1a73e8;color:#fff;padding:16px 32px;font-size:28px}\
         .card{background:#fff;margin:16px 32px;padding:16px;border-radius:8px;box-shadow:0 2px 6px #0003}\
         table{border-collapse:collapse}td{border:1px solid #ccc;padding:4px 10px}\
         .sw{display:inline-block;width:60px;height:40px;margin:4px}</style></head><body>\
         <header>Quarterly report &mdash; Zigral benchmark page</header>",
    );
    for i in 0..4 {
        body.push_str(&format!(
            "<div class=card><h2>Section {i}: lorem ipsum</h2><p>Lorem ipsum dolor sit amet, \
             consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore \
             magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi \
             ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit.</p>"
        ));
        body.push_str("<table><tr>");
        for c in 0..8 {
            body.push_str(&format!("<td>{}</td>", (i * 37 + c * 101) % 997));
        }
        body.push_str("</tr></table>");
        for c in 0..10 {
            body.push_str(&format!(
                "<span class=sw style='background:hsl({}, 70%, 55%)'></span>",
                (i * 90 + c * 36) % 360
            ));
        }
        body.push_str("</div>");
    }
    body.push_str("<input id=t style='margin:16px 32px;width:400px' autofocus></body></html>");
    let p = dir.join("page.html");
    std::fs::write(&p, body).expect("write page");
    p
}

fn start_chromium(display: u32, dir: &Path) -> Option<Proc> {
    let bin = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })?;
    let page = page(dir);
    let mut cmd = Command::new(bin);
    cmd.env("DISPLAY", format!(":{display}"))
        .args([
            "--no-sandbox",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-position=0,0",
            &format!("--window-size={W},{H}"),
            &format!("--user-data-dir={}", dir.join("chrome").display()),
            &format!("file://{}", page.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Some(Proc::spawn(cmd))
}

/// Distinct colours in a coarse sample: a blank screen has 1, a rendered page dozens.
fn colours(img: &RawImage) -> usize {
    let mut set = std::collections::HashSet::new();
    for px in img.bgrx.chunks_exact(4).step_by(97) {
        set.insert((px[0], px[1], px[2]));
    }
    set.len()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let x = Xvfb::start(W, H);
    let dir = std::env::temp_dir().join(format!("zigral-desktop-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let d = Desktop::connect(&format!(":{}", x.display)).expect("connect");
    println!("# display :{} {:?}", x.display, d.info());

    // Content: Chromium on a generated page; wait until it has painted and settled.
    let chrome = start_chromium(x.display, &dir);
    let mut content = "test pattern";
    if chrome.is_some() {
        let t = Instant::now();
        let mut stable = 0;
        let mut last = 0;
        while t.elapsed() < Duration::from_secs(40) && stable < 3 {
            std::thread::sleep(Duration::from_millis(500));
            let img = rt.block_on(d.capture(None, false)).expect("capture");
            let c = colours(&img);
            if c > 40 && c == last {
                stable += 1;
            } else {
                stable = 0;
            }
            last = c;
        }
        if stable >= 3 {
            content = "chromium page";
        }
    }
    if content == "test pattern" {
        // A painted pattern: gradients, stripes and blocks, through the screen saver-free root.
        println!("# chromium unavailable: painting a test pattern with xsetroot-free X requests");
        paint_pattern(x.display);
    }
    println!("# content: {content}");
    std::thread::sleep(Duration::from_millis(500));

    // ZIGRAL_DESKTOP_BENCH=encode runs only the encoder section (quick checks while tuning).
    let encode_only = std::env::var("ZIGRAL_DESKTOP_BENCH").is_ok_and(|v| v == "encode");
    if !encode_only {
        input_and_screenshots(&rt, &d, x.display, &dir);
    }

    // ---- encoders alone on the same frame (wall and thread CPU) ---------------------------
    let frame = rt.block_on(d.capture(None, false)).expect("frame");
    for (name, level) in [
        ("fastest", png::Compression::Fastest),
        ("fast", png::Compression::Fast),
        ("balanced", png::Compression::Balanced),
    ] {
        let mut bytes = 0;
        let (wall, cpu) = runs_cpu(15, || {
            bytes = zigral_desktop::encode_png(&frame, level)
                .expect("png")
                .len();
        });
        println!("png_encode_{name}_p50_ms: {wall:.2} (cpu {cpu:.2})");
        println!("png_encode_{name}_bytes: {bytes}");
    }
    for level in [1u8, 3] {
        let mut bytes = 0;
        let (wall, cpu) = runs_cpu(15, || {
            bytes = zigral_desktop::encode_png_with(&frame, |e| {
                e.set_deflate_compression(png::DeflateCompression::Level(level));
                e.set_filter(png::Filter::Adaptive);
            })
            .expect("png")
            .len();
        });
        println!("png_encode_zlib{level}_p50_ms: {wall:.2} (cpu {cpu:.2})");
        println!("png_encode_zlib{level}_bytes: {bytes}");
    }
    for (name, format) in [
        ("jpeg_q80", ImageFormat::Jpeg { quality: 80 }),
        ("webp", ImageFormat::Webp),
    ] {
        let (wall, cpu) = runs_cpu(15, || {
            encode(&frame, format).expect("encode");
        });
        println!("{name}_encode_only_p50_ms: {wall:.2} (cpu {cpu:.2})");
    }
    let (wall, cpu) = runs_cpu(15, || {
        zigral_desktop::bgrx_to_rgb(&frame.bgrx);
    });
    println!("bgrx_to_rgb_p50_ms: {wall:.2} (cpu {cpu:.2})");
    let (wall, cpu) = runs_cpu(15, || {
        zigral_desktop::scale_bgrx(
            &frame,
            Size {
                width: 1024,
                height: 768,
            },
        )
        .expect("scale");
    });
    println!("scale_to_xga_only_p50_ms: {wall:.2} (cpu {cpu:.2})");

    drop(chrome);
    let _ = std::fs::remove_dir_all(&dir);
}

fn input_and_screenshots(rt: &tokio::runtime::Runtime, d: &Desktop, dpy: u32, dir: &Path) {
    let n_fast = 300;
    let n_cmd = 30;
    // ---- input -------------------------------------------------------------------------
    let mut i = 0;
    let ours = runs(n_fast, 20, || {
        i += 1;
        let (px, py) = (600 + (i % 40), 300 + (i % 30));
        rt.block_on(d.click_at(px, py, Button::Left, 1))
            .expect("click");
    });
    let xd = cmd_ms(
        dpy,
        n_cmd,
        "xdotool",
        &["mousemove", "640", "330", "click", "1"],
    );
    let xd0 = cmd_ms(
        dpy,
        n_cmd,
        "xdotool",
        &["mousemove", "640", "330", "click", "--delay", "0", "1"],
    );
    report(
        "move_click",
        ours,
        &[("xdotool", xd), ("xdotool_delay0", xd0)],
    );

    let ours = runs(n_fast, 20, || {
        rt.block_on(d.key("ctrl+a")).expect("key");
    });
    let xd = cmd_ms(dpy, n_cmd, "xdotool", &["key", "ctrl+a"]);
    let xd0 = cmd_ms(dpy, n_cmd, "xdotool", &["key", "--delay", "0", "ctrl+a"]);
    report(
        "key_combo",
        ours,
        &[("xdotool", xd), ("xdotool_delay0", xd0)],
    );

    let ours = runs(n_fast, 20, || {
        rt.block_on(d.type_text("hello world", None)).expect("type");
    });
    let xd = cmd_ms(dpy, n_cmd, "xdotool", &["type", "hello world"]);
    let xd0 = cmd_ms(
        dpy,
        n_cmd,
        "xdotool",
        &["type", "--delay", "0", "hello world"],
    );
    report(
        "type_hello_world",
        ours,
        &[("xdotool", xd), ("xdotool_delay0", xd0)],
    );

    let ours = runs(100, 5, || {
        rt.block_on(d.type_text("héllo ✓ 日本語", None))
            .expect("type");
    });
    println!("type_unicode_remap_p50_us: {:.1}", ours.wall * 1e3);

    let batch = || {
        vec![
            Action::MoveTo { x: 500, y: 400 },
            Action::Click {
                at: None,
                button: Button::Left,
                count: 1,
            },
            Action::Key {
                keys: "ctrl+a".into(),
            },
            Action::TypeText {
                text: "hello world".into(),
                per_char_delay: None,
            },
            Action::CursorPosition,
        ]
    };
    let ours = runs(n_fast, 20, || {
        rt.block_on(d.batch(batch())).expect("batch");
    });
    println!("batch_5_actions_p50_us: {:.1}", ours.wall * 1e3);
    rt.block_on(d.key("ctrl+a BackSpace")).expect("clear");

    // ---- screenshots -----------------------------------------------------------------------
    let shot = |format, scale| {
        let d = d.clone();
        let rt = &rt;
        move || {
            rt.block_on(d.screenshot(ScreenshotOpts {
                region: None,
                format,
                scale,
                cursor: false,
            }))
            .expect("shot")
        }
    };
    let grab = runs(60, 3, || {
        rt.block_on(d.capture(None, false)).expect("grab");
    });
    println!("screenshot_grab_only_p50_us: {:.1}", grab.wall * 1e3);
    println!("screenshot_grab_only_cpu_us: {:.1}", grab.cpu * 1e3);

    let scrot_png = dir.join("s.png");
    let scrot = cmd_ms(
        dpy,
        n_cmd,
        "scrot",
        &["-o", &scrot_png.display().to_string()],
    );
    let pipe = |w: u32, h: u32| {
        let sh = format!(
            "scrot -o -p {d}/p.png && /usr/bin/convert {d}/p.png -resize {w}x{h}! {d}/q.png && base64 {d}/q.png > /dev/null",
            d = dir.display()
        );
        cmd_ms(dpy, n_cmd, "sh", &["-c", &sh])
    };
    let demo = pipe(W, H);
    let demo_xga = pipe(1024, 768);

    let xga = Some(Size {
        width: 1024,
        height: 768,
    });
    let mut sizes = Vec::new();
    for (name, format, scale) in [
        ("screenshot_png", ImageFormat::Png, None),
        (
            "screenshot_jpeg_q80",
            ImageFormat::Jpeg { quality: 80 },
            None,
        ),
        ("screenshot_webp", ImageFormat::Webp, None),
        ("screenshot_png_xga", ImageFormat::Png, xga),
        (
            "screenshot_jpeg_q80_xga",
            ImageFormat::Jpeg { quality: 80 },
            xga,
        ),
    ] {
        let f = shot(format, scale);
        let bytes = f().bytes.len();
        let ms = runs(n_cmd, 2, || {
            f();
        });
        let peers: Vec<(&str, Option<M>)> = if scale.is_some() {
            vec![("scrot_convert_xga", demo_xga)]
        } else {
            vec![("scrot", scrot), ("scrot_convert", demo)]
        };
        report(name, ms, &peers);
        sizes.push((name, bytes));
    }
    for (name, bytes) in sizes {
        println!("{name}_bytes: {bytes}");
    }
    if scrot.is_some()
        && let Ok(m) = std::fs::metadata(&scrot_png)
    {
        println!("scrot_png_bytes: {}", m.len());
    }
}

/// Paints gradients and blocks on the root window (used when Chromium is not installed).
fn paint_pattern(display: u32) {
    use x11rb::connection::Connection;
    use x11rb::protocol::xproto::{ChangeGCAux, ConnectionExt as _, CreateGCAux, Rectangle};
    let (conn, screen) = x11rb::connect(Some(&format!(":{display}"))).expect("connect");
    let root = conn.setup().roots[screen].root;
    let gc = conn.generate_id().expect("id");
    conn.create_gc(gc, root, &CreateGCAux::new()).expect("gc");
    for y in (0..H).step_by(4) {
        for x in (0..W).step_by(64) {
            let pixel = ((x * 255 / W) << 16) | ((y * 255 / H) << 8) | ((x + y) % 256);
            conn.change_gc(gc, &ChangeGCAux::new().foreground(pixel))
                .expect("gc");
            conn.poly_fill_rectangle(
                root,
                gc,
                &[Rectangle {
                    x: x as i16,
                    y: y as i16,
                    width: 64,
                    height: 4,
                }],
            )
            .expect("fill");
        }
    }
    conn.flush().expect("flush");
    let _ = conn.get_input_focus().expect("sync").reply();
}
