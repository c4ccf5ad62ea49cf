//! Desktop recordings, whole stack (config/host.toml under zigral-init, as root): a recording
//! of a desktop while it is driven through the API, a control lease is taken and released, the
//! control plane is killed with SIGKILL (the recording goes on: ffmpeg is zigral-init's) and a
//! secret is typed into a page that paints itself magenta while a filled secret field has
//! focus. The downloaded file is H.264 of the recorded length with the chapters inside
//! (ffprobe), no frame has a timestamp inside the paused interval, and no frame shows magenta.
//! Another user sees none of it. A disk that fills up stops a recording cleanly; what was
//! written is kept and plays, and the record says why it stopped.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zigral_tests::api::{http, login_as};
use zigral_tests::stack::{ADMIN_PW, Stack};
use zigral_tests::wait_for;

const PASSWORD: &str = "Rec-7Qx!unguessable-pw";

/// A page whose password field covers the whole viewport; while it has focus and a value the
/// page is magenta (and counts it in its title), else white.
const LOGIN: &str = "<!doctype html><html><head><title>paints:0</title><style>\
body{margin:0;background:#fff}\
#pw{position:fixed;left:0;top:0;width:100vw;height:90vh;font-size:30px;border:0;background:transparent}\
#next{position:fixed;left:0;top:92vh;height:6vh}</style></head><body>\
<form autocomplete='off'><input id=pw type=password autocomplete='off'>\
<button id=next type=button>next</button></form><script>let paints=0;\
function paint(){const a=document.activeElement;const s=a&&a.id==='pw'&&a.value;\
if(s){paints++;document.title='paints:'+paints;}\
document.body.style.background=s?'#ff00ff':'#ffffff';}\
for(const e of ['focusin','focusout','input'])document.addEventListener(e,()=>setTimeout(paint,0),true);\
</script></body></html>";

fn page_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || serve(c));
        }
    });
    port
}

fn serve(mut c: TcpStream) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0u8; 4096];
    let _ = c.read(&mut buf);
    let _ = write!(
        c,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{LOGIN}",
        LOGIN.len()
    );
}

/// GET with curl into `out`; the status code.
fn download(port: u16, path: &str, token: &str, out: &Path) -> u16 {
    let o = Command::new("curl")
        .args(["-s", "-o"])
        .arg(out)
        .args(["-w", "%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl (make test installs it)");
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

fn ffprobe(args: &[&str], file: &Path) -> Value {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(file)
        .output()
        .expect("ffprobe (make test installs ffmpeg)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Every frame of `file` scaled to 64x40 RGB: how many pixels of each are magenta.
fn magenta_per_frame(file: &Path) -> Vec<usize> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args([
            "-vf",
            "scale=64:40",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
        .chunks(64 * 40 * 3)
        .map(|f| {
            f.chunks(3)
                .filter(|p| p[0] > 180 && p[1] < 90 && p[2] > 180)
                .count()
        })
        .collect()
}

fn control_pid(st: &Stack) -> Option<i64> {
    st.init_status()["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "control" && s["state"] == "ready")?["pid"]
        .as_i64()
}

fn service(st: &Stack, name: &str) -> Value {
    st.init_status()["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn a_recording_has_chapters_survives_the_control_plane_and_never_shows_a_secret() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let st = Stack::start(tmp, "rec", 1, &[]);
    let admin = login_as(st.control, "admin", ADMIN_PW);
    let (_, other) = st.user(&admin, "rec-other");
    let port = page_server();
    let (sid, n, _) = st.session(&admin);
    let base = format!("/api/v1/desktops/{n}/recordings");

    // Bad input changes nothing.
    let (code, v) = st.api("POST", &base, &admin, Some(json!({"fps": 0})));
    assert_eq!(code, 400, "{v}");
    let (code, v) = st.api("POST", &base, &admin, Some(json!({"fps": 10, "speed": 2})));
    assert_eq!(code, 400, "{v}");
    assert_eq!(st.ok("GET", &base, &admin, None), json!([]));
    // Only the desktop's owner (or an admin) may record it.
    let (code, _) = st.api("POST", &base, &other, None);
    assert_eq!(code, 404);

    let t0 = Instant::now();
    let (code, rec) = st.api("POST", &base, &admin, Some(json!({"fps": 10})));
    assert_eq!(code, 201, "{rec}");
    let id = rec["id"].as_str().unwrap().to_owned();
    assert_eq!(rec["state"], "recording");
    assert!(rec["first_frame_ms"].as_u64().is_some(), "{rec}");
    let (code, v) = st.api("POST", &base, &admin, None);
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["error"], "already_recording");
    let recorder = service(&st, &format!("recorder@{n}"));
    let recorder_pid = recorder["pid"].as_i64().unwrap();

    // Drive the desktop: actions and a control lease become chapters.
    st.actions(
        &admin,
        &sid,
        json!([{"action": "navigate", "url": format!("http://127.0.0.1:{port}/login")}]),
    );
    st.ok(
        "POST",
        &format!("/api/v1/sessions/{sid}/control"),
        &admin,
        None,
    );
    st.ok(
        "DELETE",
        &format!("/api/v1/sessions/{sid}/control"),
        &admin,
        None,
    );

    // kill -9 of the control plane: ffmpeg is zigral-init's and goes on; the new control
    // plane adopts the recording.
    let pid = control_pid(&st).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(Duration::from_secs(60), "control plane back", || {
        control_pid(&st).filter(|p| *p != pid)?;
        matches!(http(st.control, "GET", "/readyz", None, None), Ok((200, _))).then_some(())
    });
    let r = service(&st, &format!("recorder@{n}"));
    assert_eq!(r["pid"].as_i64(), Some(recorder_pid), "{r}");
    assert!(r["state"] == "running" || r["state"] == "ready", "{r}");
    let list = st.ok("GET", &base, &admin, None);
    assert_eq!(list[0]["state"], "recording", "{list}");

    // A secret typed while recording: the recording pauses before the first keystroke and
    // resumes once the field lost focus.
    st.ok(
        "POST",
        "/api/v1/credentials",
        &admin,
        Some(
            json!({"name": "bank", "username": "ada@example.org", "password": PASSWORD,
                    "domains": ["127.0.0.1"]}),
        ),
    );
    st.actions(
        &admin,
        &sid,
        json!([{"action": "left_click", "x": 640, "y": 400}]),
    );
    st.ok(
        "POST",
        &format!("/api/v1/sessions/{sid}/type-secret"),
        &admin,
        Some(json!({"name": "bank", "field": "password"})),
    );
    // The person keeps the field focused for a while (the page is magenta meanwhile).
    std::thread::sleep(Duration::from_millis(1500));
    st.actions(&admin, &sid, json!([{"action": "key", "keys": "Tab"}]));
    let title_paints = wait_for(
        Duration::from_secs(10),
        "the page painted the secret",
        || {
            let t = st
                .actions(&admin, &sid, json!([{"action": "tab_list"}]))
                .to_string();
            let i = t.find("paints:")?;
            let k: u32 = t[i + 7..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()?;
            (k > 0).then_some(k)
        },
    );
    assert!(title_paints > 0);
    wait_for(Duration::from_secs(10), "recording resumed", || {
        let r = st.ok("GET", &base, &admin, None);
        let p = &r[0]["pauses"];
        (p.as_array()?.len() == 1 && p[0]["to_ms"].is_u64()).then_some(())
    });
    // More footage after the secret.
    st.actions(
        &admin,
        &sid,
        json!([{"action": "mouse_move", "x": 100, "y": 100}]),
    );
    // 5 s by the recording's own clock (its first frame), not the test's: under load ffmpeg's
    // first frame can come well after the start request was sent.
    wait_for(Duration::from_secs(30), "5 s recorded", || {
        let first = st.ok("GET", &base, &admin, None)[0]["first_frame_ms"].as_u64()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_millis() as u64;
        (now >= first + 5000 && t0.elapsed() >= Duration::from_secs(5)).then_some(())
    });

    // Another user sees nothing of it.
    assert_eq!(st.ok("GET", &base, &other, None), json!([]));
    let (code, _) = st.api("GET", &format!("{base}/{id}"), &other, None);
    assert_eq!(code, 404);

    let stopped = st.ok("DELETE", &format!("{base}/current"), &admin, None);
    assert_eq!(stopped["id"], id.as_str());
    assert_eq!(stopped["stop_reason"], "stopped");
    let file = tmp.join(format!("{id}.mp4"));
    wait_for(
        Duration::from_secs(60),
        "the file is ready",
        || match download(st.control, &format!("{base}/{id}"), &admin, &file) {
            200 => Some(()),
            202 => None,
            other => panic!("download answered {other}"),
        },
    );
    let rec = st.ok("GET", &base, &admin, None)[0].clone();
    assert_eq!(rec["state"], "ready", "{rec}");

    // ffprobe: H.264 of about the recorded length, with the chapters.
    let report = st.state.join("recordings").join(format!("{id}.log"));
    if std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) < 1000 {
        panic!(
            "the file is nearly empty: {rec}\nffmpeg's report:\n{}",
            std::fs::read_to_string(&report).unwrap_or_default()
        );
    }
    let probe = ffprobe(&["-show_streams", "-show_format", "-show_chapters"], &file);
    let v = &probe["streams"][0];
    assert_eq!(v["codec_name"], "h264", "{probe}");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(1280), Some(800))
    );
    let dur: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let wall = (rec["stopped_at"].as_u64().unwrap() - rec["first_frame_ms"].as_u64().unwrap())
        as f64
        / 1000.0;
    assert!(
        dur >= 5.0 - 1.0 && (dur - wall).abs() < 1.5,
        "duration {dur} s, recorded {wall} s"
    );
    let titles: Vec<String> = probe["chapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tags"]["title"].as_str().unwrap_or("").to_owned())
        .collect();
    for want in [
        "recording started",
        "actions (rest): navigate",
        "control taken by admin",
        "control released",
        "paused, no frames: secret typed: bank",
        "recording resumed",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(want)),
            "no chapter {want:?} in {titles:?}"
        );
    }

    // No frame inside the paused interval, and none shows the secret field's colour.
    let side = st.ok("GET", &format!("{base}/{id}/chapters"), &admin, None);
    let pause = &side["paused"][0];
    let (from, to) = (
        pause["from_ms"].as_u64().unwrap() as f64 / 1000.0,
        pause["to_ms"].as_u64().unwrap() as f64 / 1000.0,
    );
    assert!(to - from >= 1.4, "paused {from}..{to}");
    let packets = ffprobe(&["-show_entries", "packet=pts_time"], &file);
    let times: Vec<f64> = packets["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pts_time"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.len() > 20, "{} frames", times.len());
    let inside: Vec<&f64> = times
        .iter()
        .filter(|t| **t > from + 0.002 && **t < to - 0.002)
        .collect();
    assert!(
        inside.is_empty(),
        "frames at {inside:?} inside the pause {from}..{to}"
    );
    assert!(times.iter().any(|t| *t < from) && times.iter().any(|t| *t > to));
    let magenta = magenta_per_frame(&file);
    assert_eq!(magenta.len(), times.len());
    assert!(
        magenta.iter().all(|m| *m < 20),
        "a frame shows the focused secret field: {magenta:?}"
    );
    let bytes = std::fs::read(&file).unwrap();
    assert!(
        !bytes
            .windows(PASSWORD.len())
            .any(|w| w == PASSWORD.as_bytes())
    );

    // Delete: gone from the list and the disk.
    let (code, _) = st.api("DELETE", &format!("{base}/{id}"), &admin, None);
    assert_eq!(code, 204);
    assert_eq!(st.ok("GET", &base, &admin, None), json!([]));
    assert!(
        !st.state
            .join("recordings")
            .join(format!("{id}.mp4"))
            .exists()
    );
    let _ = std::fs::remove_file(&file);
}

/// Unmounts a tmpfs when the test ends (before the stack removes its state dir).
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn id_of(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(o.status.success(), "{args:?}");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn a_full_disk_stops_a_recording_cleanly_and_keeps_what_was_written() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let st = Stack::start(tmp, "recfull", 1, &[("ZIGRAL_RECORDINGS_MIN_FREE_MB", "8")]);
    let admin = login_as(st.control, "admin", ADMIN_PW);
    let (_, n, _) = st.session(&admin);
    // The desktop's recording directory lives on a 16 MiB filesystem of its own.
    let dir = st.state.join(format!("desktops/{n}/recording"));
    std::fs::create_dir_all(&dir).unwrap();
    let uid = id_of(&["id", "-u", &format!("zigral-d{n}")]);
    let gid = id_of(&["getent", "group", "zigral"]);
    let gid = gid.split(':').nth(2).unwrap().to_owned();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("size=16m,mode=2770,uid={uid},gid={gid}"))
        .arg("tmpfs")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs");
    let _unmount = Unmount(dir.clone());

    let base = format!("/api/v1/desktops/{n}/recordings");
    let (code, rec) = st.api("POST", &base, &admin, Some(json!({"fps": 10})));
    assert_eq!(code, 201, "{rec}");
    let id = rec["id"].as_str().unwrap().to_owned();
    wait_for(Duration::from_secs(20), "a fragment written", || {
        let len = std::fs::metadata(dir.join(format!("{id}.mp4"))).ok()?.len();
        (len > 1000).then_some(())
    });
    // The disk fills up (something else wrote 9 MiB): less than 8 MiB stay free.
    let ok = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=9", "status=none"])
        .arg(format!("of={}", dir.join("filler").display()))
        .status()
        .unwrap();
    assert!(ok.success());
    let rec = wait_for(
        Duration::from_secs(60),
        "the recording stopped and finished",
        || {
            let v = st.ok("GET", &base, &admin, None);
            let r = v.as_array()?.first()?.clone();
            (r["state"] == "ready" || r["state"] == "failed").then_some(r)
        },
    );
    assert_eq!(rec["state"], "ready", "{rec}");
    assert_eq!(rec["stop_reason"], "disk_full", "{rec}");
    assert!(
        rec["error"]
            .as_str()
            .unwrap_or("")
            .contains("keeps what was written"),
        "{rec}"
    );
    assert_eq!(service(&st, &format!("recorder@{n}")), Value::Null);
    let file = tmp.join(format!("{id}.mp4"));
    assert_eq!(
        download(st.control, &format!("{base}/{id}"), &admin, &file),
        200
    );
    let probe = ffprobe(&["-show_streams", "-show_format"], &file);
    assert_eq!(probe["streams"][0]["codec_name"], "h264", "{probe}");
    let dur: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(dur > 0.3, "duration {dur}");
    let _ = std::fs::remove_file(&file);
}
