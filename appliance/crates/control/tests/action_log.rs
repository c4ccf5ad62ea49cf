//! The action log and per-desktop isolation through the real HTTP API of a port-0 control
//! plane over real Xvfb servers: a client that disconnects mid-batch still gets every executed
//! action logged, a failed log write is a 5xx, a batch is one redb commit, typed text is not
//! in the log (nor the redb file) in clear, a stopped X server on desktop 1 does not slow
//! desktop 0, and a clipboard timeout does not rebuild the X connection.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

/// An Xvfb on a display number of our choosing (the control plane maps desktop N to
/// `display_base + N`, so two desktops need two adjacent displays).
struct Xserver {
    display: u32,
    child: Child,
}

impl Drop for Xserver {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Xserver {
    fn start(display: u32) -> Xserver {
        let child = Command::new("Xvfb")
            .args([
                &format!(":{display}"),
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
                "-noreset",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn Xvfb");
        let mut x = Xserver { display, child };
        let deadline = Instant::now() + Duration::from_secs(15);
        while x11rb::connect(Some(&format!(":{display}"))).is_err() {
            assert!(Instant::now() < deadline, "Xvfb :{display} did not come up");
            assert!(
                matches!(x.child.try_wait(), Ok(None)),
                "Xvfb :{display} exited (display taken?)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        x
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("kill");
    }
}

/// Two adjacent free display numbers (`N`, `N + 1`), both started.
fn two_displays() -> (Xserver, Xserver) {
    let free = |n: u32| {
        !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
            && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
    };
    // Tests of this process run in parallel: each takes its own pair of numbers.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = 200 + (std::process::id() % 300) * 2;
    for _ in 0..200u32 {
        let n = base + 2 * NEXT.fetch_add(1, Ordering::Relaxed);
        if free(n) && free(n + 1) {
            return (Xserver::start(n), Xserver::start(n + 1));
        }
    }
    panic!("no two adjacent free X displays");
}

struct Env {
    x0: Xserver,
    x1: Option<Xserver>,
    srv: common::Server,
    token: String,
    sid: String,
}

async fn env(two: bool, tweak: impl FnOnce(&mut zigral_control::Config)) -> Env {
    let (x0, x1) = if two {
        let (a, b) = two_displays();
        (a, Some(b))
    } else {
        (zigral_tests_free_display(), None)
    };
    let display = x0.display;
    let srv = common::start(move |c| {
        c.display_base = display;
        tweak(c);
    })
    .await;
    let token = srv.admin().await;
    let sid = srv.session(&token, None).await;
    Env {
        x0,
        x1,
        srv,
        token,
        sid,
    }
}

fn zigral_tests_free_display() -> Xserver {
    two_displays().0
}

impl Env {
    fn path(&self, rest: &str) -> String {
        format!("/api/v1/sessions/{}{rest}", self.sid)
    }

    async fn act(&self, body: Value) -> (u16, Value) {
        self.srv
            .call(
                Method::POST,
                &self.path("/actions"),
                Some(&self.token),
                Some(body),
            )
            .await
    }

    async fn log(&self) -> Vec<Value> {
        let (s, v) = self
            .srv
            .call(
                Method::GET,
                &self.path("/actions?limit=500"),
                Some(&self.token),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["actions"].as_array().cloned().unwrap_or_default()
    }

    /// Polls the log until it holds `n` entries (or 20 s pass).
    async fn wait_log(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let l = self.log().await;
            if l.len() >= n || Instant::now() > deadline {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_batch_still_logs_every_executed_action() {
    let e = env(false, |_| {}).await;
    // 20 actions, ~50 ms each: about a second in all.
    let actions: Vec<Value> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                json!({"action": "mouse_move", "x": 10 + i, "y": 10 + i})
            } else {
                json!({"action": "wait", "duration_ms": 100})
            }
        })
        .collect();
    // The client gives up after ~half the batch.
    let r = e
        .srv
        .http
        .post(e.srv.url(&e.path("/actions")))
        .bearer_auth(&e.token)
        .json(&json!({"actions": actions}))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(
        r.as_ref().is_err_and(|e| e.is_timeout()),
        "the client should have timed out: {r:?}"
    );
    assert!(
        e.log().await.len() < 20,
        "the batch should still be running"
    );
    let log = e.wait_log(20).await;
    assert_eq!(log.len(), 20, "{log:?}");
    for (i, a) in log.iter().enumerate() {
        assert_eq!(a["what"]["index"], i, "{a}");
        assert_eq!(a["ok"], true, "{a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_20_is_one_commit_and_typed_text_is_not_in_clear() {
    let e = env(false, |_| {}).await;
    let stats = e.srv.state.store().stats();
    let actions: Vec<Value> = (0..20)
        .map(|i| json!({"action": "mouse_move", "x": 100 + i, "y": 100}))
        .collect();
    let before = stats.commits.load(Ordering::Relaxed);
    let (s, v) = e.act(json!({"actions": actions})).await;
    assert_eq!(s, 200, "{v}");
    let after = stats.commits.load(Ordering::Relaxed);
    assert_eq!(after - before, 1, "a 20-action batch should be one commit");

    const SECRET: &str = "Tr0ub4dor-zigral-secret";
    let (s, v) = e
        .act(json!({"action": "type", "text": SECRET, "delay_ms": 0}))
        .await;
    assert_eq!(s, 200, "{v}");
    let log = e.log().await;
    let typed = log.last().expect("type entry");
    assert_eq!(typed["what"]["action"], "type");
    let input = &typed["what"]["input"]["text"];
    assert_eq!(input["chars"], SECRET.chars().count(), "{typed}");
    assert_eq!(
        input["hmac_sha256"].as_str().map(str::len),
        Some(64),
        "{typed}"
    );
    let all = serde_json::to_string(&log).expect("json");
    assert!(!all.contains(SECRET), "typed text in the log: {all}");
    let db = std::fs::read(e.srv.state.store().path()).expect("redb file");
    assert!(
        !db.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "typed text in the redb file"
    );
    // The same text again: the same keyed hash (an operator with the key can match it).
    let (s, _) = e.act(json!({"action": "type", "text": SECRET})).await;
    assert_eq!(s, 200);
    let log = e.log().await;
    let again = &log.last().expect("entry")["what"]["input"]["text"];
    assert_eq!(again["hmac_sha256"], input["hmac_sha256"]);
    // A secret placeholder is never logged at all.
    let (s, _) = e
        .act(json!({"action": "clipboard_set", "text": "{{secret:bank}}"}))
        .await;
    assert_eq!(s, 200);
    let log = e.log().await;
    let last = &log.last().expect("entry")["what"]["input"];
    assert!(!last.to_string().contains("bank"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_typed_text_when_the_operator_turns_it_on() {
    let e = env(false, |c| c.log_typed_text = true).await;
    let (s, v) = e.act(json!({"action": "type", "text": "hello"})).await;
    assert_eq!(s, 200, "{v}");
    let log = e.log().await;
    assert_eq!(log[0]["what"]["input"]["text"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_log_write_is_a_5xx_that_says_the_actions_ran() {
    let e = env(false, |_| {}).await;
    let exec = e.srv.state.desktops().executor(0).await.expect("executor");
    let body = json!({"actions": [
        {"action": "mouse_move", "x": 7, "y": 9},
        {"action": "wait", "duration_ms": 1500},
    ]});
    let req = e
        .srv
        .http
        .post(e.srv.url(&e.path("/actions")))
        .bearer_auth(&e.token)
        .json(&body)
        .send();
    let req = tokio::spawn(req);
    // The batch is running once the pointer is at (7, 9); then the session goes away.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = exec.desktop().cursor_position().await.expect("pointer");
        if (p.x, p.y) == (7, 9) {
            break;
        }
        assert!(Instant::now() < deadline, "the batch never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, v) = e
        .srv
        .call(Method::DELETE, &e.path(""), Some(&e.token), None)
        .await;
    assert!((200..300).contains(&s), "delete: {s} {v}");
    let r = req.await.expect("join").expect("reply");
    let status = r.status().as_u16();
    let v: Value = r.json().await.expect("json");
    assert_eq!(status, 500, "{v}");
    assert_eq!(v["error"], "action_log_failed", "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("ran but could not be logged")),
        "{v}"
    );
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_x_server_on_desktop_1_does_not_slow_desktop_0() {
    let e = env(true, |c| c.x_connect_timeout_ms = 20_000).await;
    let x1 = e.x1.as_ref().expect("desktop 1");
    let shot = e.path("/screenshot?format=jpeg");
    let click = json!({"action": "mouse_move", "x": 5, "y": 5});
    let measure = |n: usize| {
        let e = &e;
        let shot = shot.clone();
        let click = click.clone();
        async move {
            let mut shots = Vec::new();
            let mut moves = Vec::new();
            for _ in 0..n {
                let t = Instant::now();
                let r = e.srv.req(Method::GET, &shot, Some(&e.token), None).await;
                assert_eq!(r.status().as_u16(), 200);
                r.bytes().await.expect("bytes");
                shots.push(t.elapsed());
                let t = Instant::now();
                let (s, v) = e.act(click.clone()).await;
                assert_eq!(s, 200, "{v}");
                moves.push(t.elapsed());
            }
            (p50(shots), p50(moves))
        }
    };
    measure(3).await; // warm up (connects desktop 0)
    let (shot0, move0) = measure(15).await;

    x1.signal(nix::sys::signal::Signal::SIGSTOP);
    let st = e.srv.state.clone();
    let hung = tokio::spawn(async move { st.desktops().executor(1).await.map(|_| ()) });
    let (shot1, move1) = measure(15).await;
    assert!(
        !hung.is_finished(),
        "desktop 1's connect should still hang while desktop 0 was measured"
    );
    x1.signal(nix::sys::signal::Signal::SIGCONT);
    let r = tokio::time::timeout(Duration::from_secs(30), hung)
        .await
        .expect("desktop 1 settles after SIGCONT")
        .expect("join");
    eprintln!(
        "desktop 0 p50: screenshot {shot0:?} -> {shot1:?}, mouse_move {move0:?} -> {move1:?}; \
         desktop 1 after SIGCONT: {r:?}"
    );
    let slack = Duration::from_millis(50);
    assert!(
        shot1 <= shot0 * 5 + slack,
        "screenshot {shot0:?} -> {shot1:?}"
    );
    assert!(
        move1 <= move0 * 5 + slack,
        "mouse_move {move0:?} -> {move1:?}"
    );
    drop(e.x0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_gives_503_desktop_unavailable() {
    let (x, _spare) = two_displays();
    x.signal(nix::sys::signal::Signal::SIGSTOP);
    let display = x.display;
    let srv = common::start(move |c| {
        c.display_base = display;
        c.x_connect_timeout_ms = 300;
    })
    .await;
    let token = srv.admin().await;
    let sid = srv.session(&token, None).await;
    let t = Instant::now();
    let (s, v) = srv
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{sid}/actions"),
            Some(&token),
            Some(json!({"action": "mouse_move", "x": 1, "y": 1})),
        )
        .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"], "desktop_unavailable", "{v}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    x.signal(nix::sys::signal::Signal::SIGCONT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clipboard_timeout_keeps_the_x_connection() {
    use x11rb::connection::Connection;
    use x11rb::protocol::xproto::{ConnectionExt, CreateWindowAux, WindowClass};
    use x11rb::wrapper::ConnectionExt as _;
    let e = env(false, |_| {}).await;
    let (s, v) = e.act(json!({"action": "mouse_move", "x": 3, "y": 3})).await;
    assert_eq!(s, 200, "{v}");
    let desktops = e.srv.state.desktops();
    let gen0 = desktops.generation(0);
    assert_eq!(gen0, 1);
    let exec0 = desktops.executor(0).await.expect("executor");

    // A CLIPBOARD owner that never answers a conversion request.
    let (conn, screen) = x11rb::connect(Some(&format!(":{}", e.x0.display))).expect("connect");
    let root = conn.setup().roots[screen].root;
    let win = conn.generate_id().expect("id");
    conn.create_window(
        0,
        win,
        root,
        0,
        0,
        1,
        1,
        0,
        WindowClass::INPUT_OUTPUT,
        0,
        &CreateWindowAux::new(),
    )
    .expect("window");
    let clip = conn
        .intern_atom(false, b"CLIPBOARD")
        .expect("atom")
        .reply()
        .expect("atom reply")
        .atom;
    conn.set_selection_owner(win, clip, x11rb::CURRENT_TIME)
        .expect("own");
    conn.sync().expect("sync");

    let (s, v) = e.act(json!({"action": "clipboard_get"})).await;
    assert_eq!(s, 500, "{v}");
    assert_eq!(v["results"][0]["error"]["error"], "desktop_error", "{v}");
    assert_eq!(desktops.generation(0), gen0, "the X connection was rebuilt");
    let exec1 = desktops.executor(0).await.expect("executor");
    assert!(exec0.same(&exec1), "a new executor replaced the old one");
    let (s, v) = e.act(json!({"action": "mouse_move", "x": 4, "y": 4})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(desktops.generation(0), gen0);
    drop(conn);
}
