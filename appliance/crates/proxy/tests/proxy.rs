//! Integration tests of the proxy against real TCP targets and real WebSocket clients:
//! relaying, close codes, tokens, view-only filtering, hostile clients, limits, static files,
//! TLS sniffing, metrics and draining shutdown.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use zigral_proxy::{Config, OriginPolicy, Routing, Target};
use zigral_token::{Clock, ManualClock, Role, SigningKey};

fn fixed(addr: std::net::SocketAddr) -> Config {
    Config::new(Routing::Fixed(Target::Tcp(addr.to_string())))
}

fn token_config(key: &SigningKey, vnc_base: u16) -> Config {
    Config::new(Routing::Token {
        key: Arc::new(key.clone()),
        vnc_host: "127.0.0.1".parse().expect("ip"),
        vnc_base,
        leases: None,
        control: None,
        live_view: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_binary_frames_and_echoes_the_binary_subprotocol() {
    let (echo, _) = echo_server().await;
    let p = start(fixed(echo)).await;
    let (mut ws, resp) = connect(&p.url("/websockify")).await.expect("connect");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap_or("")),
        Some("binary")
    );
    for msg in [b"hello".to_vec(), vec![7u8; 100_000], b"x".to_vec()] {
        send(&mut ws, &msg).await;
        assert_eq!(read_bytes(&mut ws, msg.len()).await, msg);
    }
    let t = p.proxy.metrics().totals();
    assert_eq!(t.bytes_from_client, 100_006);
    assert_eq!(t.bytes_to_client, 100_006);
    ws.send(Message::Close(None)).await.expect("close");
    // The proxy answers the close handshake and ends the session.
    let _ = close_code(&mut ws).await;
    eventually(10, "session end", || p.sessions_open() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_closes_1011_and_hangup_closes_1000() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let p = start(fixed(dead)).await;
    let (mut ws, _) = connect(&p.url("/")).await.expect("connect");
    assert_eq!(close_code(&mut ws).await, 1011);
    assert_eq!(p.proxy.metrics().totals().target_connect_failures, 1);

    // A target that says goodbye and hangs up: data first, then 1000.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        s.write_all(b"RFB 003.008\nbye").await.expect("write");
    });
    let p2 = start(fixed(addr)).await;
    let (mut ws, _) = connect(&p2.url("/websockify")).await.expect("connect");
    assert_eq!(read_bytes(&mut ws, 15).await, b"RFB 003.008\nbye");
    assert_eq!(close_code(&mut ws).await, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_to_a_unix_socket_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vnc.sock");
    let l = tokio::net::UnixListener::bind(&path).expect("bind unix");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let p = start(Config::new(Routing::Fixed(Target::Unix(path)))).await;
    let (mut ws, _) = connect(&p.url("/websockify")).await.expect("connect");
    send(&mut ws, b"over unix").await;
    assert_eq!(read_bytes(&mut ws, 9).await, b"over unix");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_before_any_byte_reaches_the_vnc_server() {
    // The proxy checks expiry against the key's clock: a manual one, moved by the test.
    let clock = ManualClock::new(zigral_token::now_secs());
    let key = SigningKey::generate().with_clock(clock.clone());
    // desktop 0 and 1 targets on consecutive ports
    let base = zigral_tests::free_port_range(2);
    let l0 = tokio::net::TcpListener::bind(("127.0.0.1", base))
        .await
        .expect("bind");
    let l1 = tokio::net::TcpListener::bind(("127.0.0.1", base + 1))
        .await
        .expect("bind");
    let (_, acc0, mut rx0) = recording_on(l0, b"desk0").await;
    let (_, acc1, _rx1) = recording_on(l1, b"desk1").await;
    let p = start(token_config(&key, base)).await;

    let (good, _) = key.mint_for(0, Role::Control, "alice", 60);
    let (other, _) = key.mint_for(1, Role::Control, "bob", 60);
    let (foreign, _) = SigningKey::generate().mint_for(0, Role::Control, "eve", 60);
    let (expired, _) = key.mint_at(0, Role::Control, "alice", 60, clock.now_secs() - 60);
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });

    assert_eq!(status_of(&p.url("/websockify")).await, 401);
    assert_eq!(status_of(&p.url("/websockify?token=")).await, 401);
    assert_eq!(
        status_of(&p.url(&format!("/websockify?token={foreign}"))).await,
        403
    );
    assert_eq!(
        status_of(&p.url(&format!("/websockify?token={tampered}"))).await,
        403
    );
    assert_eq!(
        status_of(&p.url(&format!("/websockify?token={expired}"))).await,
        403
    );
    assert_eq!(status_of(&p.url("/websockify?token=garbage")).await, 403);
    // desktop 1's token used for desktop 0
    assert_eq!(
        status_of(&p.url(&format!("/websockify?token={other}&desktop=0"))).await,
        403
    );
    let refused = p.proxy.metrics().totals().refused;
    assert_eq!(refused[&zigral_proxy::metrics::Refusal::NoToken], 2);
    assert_eq!(refused[&zigral_proxy::metrics::Refusal::BadToken], 3);
    assert_eq!(refused[&zigral_proxy::metrics::Refusal::ExpiredToken], 1);
    assert_eq!(refused[&zigral_proxy::metrics::Refusal::WrongDesktop], 1);

    // Valid tokens connect, each to its own desktop (both URL forms noVNC may use).
    let (mut ws, _) = connect(&p.url(&format!("/websockify?token={good}&desktop=0")))
        .await
        .expect("valid token");
    assert_eq!(read_bytes(&mut ws, 5).await, b"desk0");
    send(&mut ws, b"hi").await;
    assert_eq!(rx0.recv().await.expect("recv"), b"hi");
    // Requests are served in order: had a refused one reached desktop 0, it would have been
    // accepted before this valid one.
    assert_eq!(
        acc0.load(Ordering::SeqCst),
        1,
        "refused requests reached desktop 0"
    );
    let (mut ws1, _) = connect(&p.url(&format!("/?token={other}")))
        .await
        .expect("valid");
    assert_eq!(read_bytes(&mut ws1, 5).await, b"desk1");
    assert_eq!(
        acc1.load(Ordering::SeqCst),
        1,
        "refused requests reached desktop 1"
    );

    // The same valid token, once the clock passes its expiry: refused, nothing reaches VNC.
    clock.advance(59);
    let (mut ws2, _) = connect(&p.url(&format!("/websockify?token={good}")))
        .await
        .expect("valid for one more second");
    assert_eq!(read_bytes(&mut ws2, 5).await, b"desk0");
    clock.advance(1);
    assert_eq!(
        status_of(&p.url(&format!("/websockify?token={good}"))).await,
        403
    );
    let refused = p.proxy.metrics().totals().refused;
    assert_eq!(refused[&zigral_proxy::metrics::Refusal::ExpiredToken], 2);
    assert_eq!(
        acc0.load(Ordering::SeqCst),
        2,
        "an expired token reached VNC"
    );
}

/// Desktop handover: `zigral proxy --state-dir` accepts a token only while its lease is the
/// desktop's current lease (`<state>/leases/N`), re-read on every attempt, so a token minted
/// for one user's desktop N stops working once desktop N is handed to someone else or
/// destroyed. Refused attempts never reach the VNC server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_an_earlier_lease_are_refused() {
    use zigral_proxy::metrics::Refusal;
    use zigral_proxy::server::LEASE_MISMATCH;
    use zigral_token::write_lease;

    let state = tempfile::tempdir().expect("tempdir");
    let sd = state.path().to_str().expect("utf8");
    let (vnc, accepted, _rx) = recording_server(b"desk0").await;
    let port = vnc.port().to_string();
    // The configuration `zigral proxy` itself builds from its command line.
    let (_, cfg) =
        parse(&["127.0.0.1:0", "--state-dir", sd, "--vnc-base", &port]).expect("token mode");
    let p = start(cfg).await;
    let key = SigningKey::load_or_create(state.path()).expect("the proxy's key");
    let url = |t: &str| format!("/websockify?token={t}&desktop=0");
    let lease_token = |l: Option<&str>| {
        key.mint_for_lease(0, Role::Control, "user", 60, l)
            .expect("mint")
            .0
    };
    let accepts = |t: String| {
        let u = p.url(&url(&t));
        async move {
            let (mut ws, _) = connect(&u).await.expect("accepted");
            assert_eq!(read_bytes(&mut ws, 5).await, b"desk0");
        }
    };
    let refused = |t: String| {
        let (addr, path) = (p.addr, url(&t));
        async move { refusal(addr, &path).await }
    };
    let stale = (403, LEASE_MISMATCH.to_owned());

    // A desktop nobody leased (the boot-time desktop, the console URL): lease-less tokens work.
    let unleased = key.mint_for(0, Role::Control, "console", 60).0;
    accepts(unleased.clone()).await;

    // Handed to user A under lease "a": the earlier token is refused, A's works.
    write_lease(state.path(), 0, Some("a")).expect("lease a");
    assert_eq!(refused(unleased.clone()).await, stale);
    let token_a = lease_token(Some("a"));
    accepts(token_a.clone()).await;

    // Handed on to user B under lease "b": A's token is refused, B's works, and so does the
    // operator's `--print-url 0`, minted for the current lease.
    write_lease(state.path(), 0, Some("b")).expect("lease b");
    assert_eq!(refused(token_a.clone()).await, stale);
    let token_b = lease_token(Some("b"));
    accepts(token_b.clone()).await;
    let cli = Cli::try_parse_from([
        "proxy",
        "127.0.0.1:6081",
        "--state-dir",
        sd,
        "--print-url",
        "0",
    ])
    .expect("parse");
    let printed = cli.args.viewer_url().expect("url").expect("some");
    let printed = printed
        .split("token=")
        .nth(1)
        .and_then(|t| t.split('&').next())
        .expect("token");
    accepts(printed.to_owned()).await;

    // Destroyed (lease removed): B's token is refused too.
    write_lease(state.path(), 0, None).expect("unlease");
    assert_eq!(refused(token_b).await, stale);

    assert_eq!(
        accepted.load(Ordering::SeqCst),
        4,
        "a refused token reached the VNC server"
    );
    let totals = p.proxy.metrics().totals();
    assert_eq!(totals.refused[&Refusal::LeaseMismatch], 3);
    assert!(
        p.proxy
            .metrics()
            .render_prometheus()
            .contains("zigral_proxy_refused_total{reason=\"lease_mismatch\"} 3"),
        "lease refusals have their own metrics label"
    );

    // A lease file that cannot be read refuses every token for that desktop (fail closed).
    std::fs::create_dir_all(zigral_token::lease_path(state.path(), 0)).expect("unreadable");
    let (status, body) = refused(unleased).await;
    assert_eq!(status, 503);
    assert!(body.contains("lease"), "{body}");
    assert_eq!(
        p.proxy.metrics().totals().refused[&Refusal::LeaseUnreadable],
        1
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

/// Without a state directory (library use with `leases: None`), leases are not checked:
/// leased and lease-less tokens alike are routed by signature, expiry and desktop alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_lease_files_tokens_are_not_lease_checked() {
    let key = SigningKey::generate();
    let (vnc, _, _rx) = recording_server(b"desk0").await;
    let p = start(token_config(&key, vnc.port())).await;
    for lease in [None, Some("a")] {
        let (t, _) = key
            .mint_for_lease(0, Role::View, "user", 60, lease)
            .expect("mint");
        let (mut ws, _) = connect(&p.url(&format!("/?token={t}")))
            .await
            .expect("accepted");
        assert_eq!(read_bytes(&mut ws, 5).await, b"desk0");
    }
}

/// A minimal RFB 3.8 client handshake + messages, as bytes.
fn rfb_client_stream(shared: u8) -> Vec<u8> {
    let mut v = b"RFB 003.008\n".to_vec();
    v.push(1); // security None
    v.push(shared);
    v.extend([3, 1, 0, 0, 0, 0, 4, 0, 3, 0]); // FramebufferUpdateRequest
    v.extend([4, 1, 0, 0, 0, 0, 0, 0x61]); // KeyEvent 'a' down
    v.extend([5, 1, 0, 10, 0, 20]); // PointerEvent
    v.extend([6, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']); // ClientCutText
    v.extend([3, 1, 0, 0, 0, 0, 4, 0, 3, 0]);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_tokens_drop_input_and_control_tokens_pass_it() {
    let key = SigningKey::generate();
    let (addr, _, mut rx) = recording_server(b"RFB 003.008\n").await;
    let p = start(token_config(&key, addr.port())).await;
    let stream = rfb_client_stream(0);

    for (role, expect) in [
        (Role::View, {
            let mut e = b"RFB 003.008\n\x01\x01".to_vec(); // shared forced on
            e.extend([3, 1, 0, 0, 0, 0, 4, 0, 3, 0]);
            e.extend([3, 1, 0, 0, 0, 0, 4, 0, 3, 0]);
            e
        }),
        (Role::Control, stream.clone()),
    ] {
        let (t, _) = key.mint_for(0, role, "u", 60);
        let (mut ws, _) = connect(&p.url(&format!("/websockify?token={t}")))
            .await
            .expect("connect");
        assert_eq!(read_bytes(&mut ws, 12).await, b"RFB 003.008\n");
        // Split at awkward places to exercise the streaming parser.
        for chunk in stream.chunks(5) {
            send(&mut ws, chunk).await;
        }
        let mut got = Vec::new();
        while got.len() < expect.len() {
            let part = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("target got too little")
                .expect("recv");
            got.extend(part);
        }
        assert_eq!(got, expect, "{role}");
        // An unknown message type closes a view session (policy); control passes it through.
        send(&mut ws, &[99]).await;
        if role == Role::View {
            assert_eq!(close_code(&mut ws).await, 1008);
        } else {
            assert_eq!(rx.recv().await.expect("recv"), vec![99]);
        }
    }
    let t = p.proxy.metrics().totals();
    assert_eq!(t.dropped_input, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_lose_their_connection_and_others_keep_working() {
    let (echo, _) = echo_server().await;
    let blaster = blast_server().await;
    let mut cfg = fixed(echo);
    cfg.max_frame = 64 * 1024;
    cfg.idle_timeout = Some(Duration::from_secs(2));
    cfg.heartbeat = Some(Duration::from_millis(500));
    let p = start(cfg.clone()).await;
    let (good, _) = connect(&p.url("/websockify")).await.expect("connect");
    // The good client keeps reading (and so answers pings) in the background.
    let (mut good_tx, mut good_rx) = good.split();
    let (data_tx, mut data_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(Ok(m)) = good_rx.next().await {
            if let Message::Binary(b) = m {
                let _ = data_tx.send(b.to_vec());
            }
        }
    });
    let mut echo_check = async |msg: Vec<u8>, what: &str| {
        good_tx
            .send(Message::Binary(msg.clone().into()))
            .await
            .expect("good send");
        let mut got = Vec::new();
        while got.len() < msg.len() {
            let part = tokio::time::timeout(Duration::from_secs(20), data_rx.recv())
                .await
                .expect("good read timed out")
                .unwrap_or_else(|| panic!("good connection closed {what}"));
            got.extend(part);
        }
        assert_eq!(got, msg, "{what}");
    };
    let cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        ("unmasked", vec![0x82, 0x03, 1, 2, 3], Some(1002)),
        (
            "oversized",
            {
                let mut f = vec![0x82, 0xFF];
                f.extend((1u64 << 40).to_be_bytes());
                f.extend([1, 2, 3, 4]);
                f
            },
            Some(1009),
        ),
        (
            "just over the limit",
            frame(true, 2, &vec![0u8; 64 * 1024 + 1]),
            Some(1009),
        ),
        ("reserved bits", vec![0xF2, 0x80, 0, 0, 0, 0], Some(1002)),
        ("bad opcode", vec![0x8B, 0x80, 0, 0, 0, 0], Some(1002)),
        ("text frame", frame(true, 1, b"text"), Some(1003)),
        ("orphan continuation", frame(true, 0, b"x"), Some(1002)),
        ("fragmented ping", frame(false, 9, b"x"), Some(1002)),
        ("bad close code", frame(true, 8, &[0x03, 0xE7]), Some(1002)),
    ];
    for (i, (what, bytes, want)) in cases.into_iter().enumerate() {
        let mut s = raw_ws(p.addr, "/websockify").await;
        s.write_all(&bytes).await.expect("write");
        assert_eq!(raw_close_code(&mut s).await, want, "{what}");
        echo_check(vec![i as u8; 1000], what).await;
    }

    // A client that vanishes in the middle of a frame.
    {
        let mut s = raw_ws(p.addr, "/websockify").await;
        let f = frame(true, 2, &[9u8; 5000]);
        s.write_all(&f[..2000]).await.expect("write");
        drop(s);
    }
    // A client that never reads while the target floods it is closed after the idle timeout.
    let mut slow_cfg = cfg.clone();
    slow_cfg.routing = Routing::Fixed(Target::Tcp(blaster.to_string()));
    let slow_proxy = start(slow_cfg).await;
    let slow = raw_ws(slow_proxy.addr, "/websockify").await;
    eventually(20, "slow client session to start", || {
        slow_proxy.sessions_open() == 1
    })
    .await;
    eventually(30, "slow client to be dropped", || {
        slow_proxy.sessions_open() == 0
    })
    .await;
    drop(slow);
    // An idle client (sends nothing, answers no pings) is closed too.
    let mut idle = raw_ws(p.addr, "/websockify").await;
    let code = raw_close_code(&mut idle).await;
    assert_eq!(code, Some(1001), "idle client");

    eventually(20, "only the good session left", || p.sessions_open() == 1).await;
    echo_check(b"still here".to_vec(), "at the end").await;
    assert!(p.proxy.metrics().totals().protocol_errors >= 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_all_echo() {
    let hard = raise_nofile();
    assert!(
        hard >= 5000,
        "need RLIMIT_NOFILE >= 5000, hard limit is {hard}"
    );
    let (echo, accepted) = echo_server().await;
    let mut cfg = fixed(echo);
    cfg.max_per_ip = 0;
    let p = start(cfg).await;
    const N: usize = 1000;
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        let (ws, _) = connect(&p.url("/websockify")).await.expect("connect");
        clients.push(ws);
    }
    eventually(60, "1000 target connections", || {
        accepted.load(Ordering::SeqCst) == N
    })
    .await;
    // The target counts a connection when it accepts it, a moment before the proxy's task
    // registers the session.
    eventually(10, "1000 open sessions", || p.sessions_open() == N).await;
    // Every connection echoes its own bytes while all are open.
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            tokio::spawn(async move {
                let msg = format!("conn-{i:05}").into_bytes();
                send(&mut ws, &msg).await;
                assert_eq!(read_bytes(&mut ws, msg.len()).await, msg);
                ws
            })
        })
        .collect();
    let mut open = Vec::new();
    for t in tasks {
        open.push(t.await.expect("echo task"));
    }
    assert_eq!(open.len(), N);
    assert_eq!(p.sessions_open(), N);
    drop(open);
    eventually(60, "all sessions closed", || p.sessions_open() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_allowlist_and_connection_limits() {
    let (echo, _) = echo_server().await;
    let mut cfg = fixed(echo);
    cfg.origins = OriginPolicy::List(vec!["http://ui.example:8000".into()]);
    cfg.max_per_ip = 3;
    let p = start(cfg).await;
    let with_origin = |o: &str| {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                p.url("/websockify"),
            )
            .expect("req");
        req.headers_mut().insert("Origin", o.parse().expect("hv"));
        req
    };
    let status = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Ok((_, resp)) => {
            let resp: tokio_tungstenite::tungstenite::handshake::client::Response = resp;
            resp.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        status(tokio_tungstenite::connect_async(with_origin("http://evil.example")).await),
        403
    );
    assert_eq!(
        status(tokio_tungstenite::connect_async(with_origin("http://ui.example:8000")).await),
        101
    );
    let own = format!("http://{}", p.addr);
    let (a, _) = tokio_tungstenite::connect_async(with_origin(&own))
        .await
        .expect("own origin");
    let (b, _) = connect(&p.url("/websockify")).await.expect("second");
    let (c, _) = connect(&p.url("/websockify")).await.expect("third");
    // The fourth connection from this IP is turned away with 503.
    let mut s = TcpStream::connect(p.addr).await.expect("tcp");
    let mut resp = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut resp))
        .await
        .expect("timeout")
        .ok();
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    drop((a, b, c));
    eventually(10, "slots free again", || {
        p.proxy.metrics().totals().connections_open == 0
    })
    .await;
    let (_d, _) = connect(&p.url("/websockify")).await.expect("after release");
}

async fn http(addr: std::net::SocketAddr, req: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("timeout")
        .expect("read");
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head[9..12].parse().expect("status");
    (status, head, buf[split..].to_vec())
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_static_files_safely() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = dir.path().join("web");
    std::fs::create_dir_all(web.join("sub")).expect("mkdir");
    std::fs::create_dir_all(web.join("app")).expect("mkdir");
    std::fs::write(web.join("index.html"), "<p>hi</p>").expect("write");
    std::fs::write(web.join("app/index.html"), "app").expect("write");
    std::fs::write(web.join("rfb.js"), "export default 1;").expect("write");
    std::fs::write(web.join("sub/a.png"), [0x89, b'P', b'N', b'G']).expect("write");
    std::fs::write(web.join(".secret"), "no").expect("write");
    std::fs::write(dir.path().join("outside.txt"), "outside").expect("write");
    std::os::unix::fs::symlink(dir.path().join("outside.txt"), web.join("link.txt")).expect("ln");
    let (echo, _) = echo_server().await;
    let mut cfg = fixed(echo);
    cfg.web_dir = Some(web.clone());
    let p = start(cfg).await;

    let (s, head, body) = http(p.addr, &get("/", "")).await;
    assert_eq!((s, body.as_slice()), (200, b"<p>hi</p>".as_slice()));
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-cache"), "{head}");
    let (s, head, body) = http(p.addr, &get("/rfb.js", "")).await;
    assert_eq!((s, body.as_slice()), (200, b"export default 1;".as_slice()));
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert!(
        head.contains("cache-control: public, max-age=600"),
        "{head}"
    );
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("etag")
        .to_owned();
    let (s, _, body) = http(
        p.addr,
        &get("/rfb.js", &format!("If-None-Match: {etag}\r\n")),
    )
    .await;
    assert_eq!((s, body.len()), (304, 0));
    let (s, head, _) = http(p.addr, &get("/sub/a.png", "")).await;
    assert_eq!(s, 200);
    assert!(head.contains("content-type: image/png"), "{head}");
    let (s, head, body) = http(
        p.addr,
        "HEAD /rfb.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((s, body.len()), (200, 0));
    assert!(head.contains("content-length: 17"), "{head}");
    // Directory without index: no listing. Directory without slash: redirect.
    assert_eq!(http(p.addr, &get("/sub/", "")).await.0, 404);
    let (s, head, _) = http(p.addr, &get("/app", "")).await;
    assert_eq!(s, 301);
    assert!(head.contains("location: /app/"), "{head}");
    assert_eq!(http(p.addr, &get("/app/", "")).await.2, b"app");
    for bad in [
        "/../outside.txt",
        "/sub/../../outside.txt",
        "/%2e%2e/outside.txt",
        "/sub%2f..%2f..%2foutside.txt",
        "/link.txt",
        "/.secret",
        "/missing.js",
    ] {
        let (s, _, body) = http(p.addr, &get(bad, "")).await;
        assert_eq!(s, 404, "{bad}");
        assert!(!String::from_utf8_lossy(&body).contains("outside"), "{bad}");
    }
    let (s, _, _) = http(
        p.addr,
        "POST /rfb.js HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(s, 405);
    // /metrics is served to loopback clients.
    let (s, _, body) = http(p.addr, &get("/metrics", "")).await;
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&body).contains("zigral_proxy_connections_total"));
}

fn make_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (Debian package openssl) is needed for the TLS test");
    assert!(st.success());
    (cert, key)
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    cert: &std::path::Path,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(cert).expect("pem") {
        roots.add(c.expect("cert")).expect("add root");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("tcp");
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().expect("name"), tcp)
        .await
        .expect("tls handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_plain_share_the_port_unless_ssl_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = make_cert(dir.path());
    let (echo, _) = echo_server().await;
    let mut cfg = fixed(echo);
    cfg.tls = Some(zigral_proxy::tls::load(&cert, Some(&key)).expect("load tls"));
    let p = start(cfg.clone()).await;

    let tls = tls_connect(p.addr, &cert).await;
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/websockify", tls)
        .await
        .expect("wss handshake");
    ws.send(Message::Binary(b"secure".to_vec().into()))
        .await
        .expect("send");
    let mut got = Vec::new();
    while got.len() < 6 {
        if let Some(Ok(Message::Binary(b))) = ws.next().await {
            got.extend_from_slice(&b);
        }
    }
    assert_eq!(got, b"secure");
    // plain on the same port
    let (mut plain, _) = connect(&p.url("/websockify")).await.expect("plain");
    send(&mut plain, b"plain").await;
    assert_eq!(read_bytes(&mut plain, 5).await, b"plain");

    cfg.tls_only = true;
    let only = start(cfg).await;
    assert_eq!(http(only.addr, &get("/", "")).await.0, 403);
    let tls = tls_connect(only.addr, &cert).await;
    assert!(
        tokio_tungstenite::client_async("wss://localhost/", tls)
            .await
            .is_ok()
    );
    // bad key file → clear error
    let err = zigral_proxy::tls::load(&cert, Some(&dir.path().join("nope.pem")))
        .expect_err("missing key");
    assert!(err.to_string().contains("nope.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_stream_health_and_rtt() {
    let (echo, _) = echo_server().await;
    let mut cfg = fixed(echo);
    cfg.heartbeat = Some(Duration::from_millis(200));
    let p = start(cfg).await;
    let (mut ws, _) = connect(&p.url("/websockify")).await.expect("connect");
    send(&mut ws, &[1u8; 1234]).await;
    assert_eq!(read_bytes(&mut ws, 1234).await.len(), 1234);
    // tungstenite answers pings while we keep reading.
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
    let m = p.proxy.metrics();
    eventually(20, "an RTT measurement", || {
        m.sessions().first().and_then(|s| s.rtt_us).is_some()
    })
    .await;
    let s = &m.sessions()[0];
    assert_eq!((s.bytes_from_client, s.bytes_to_client), (1234, 1234));
    assert!(s.frames_from_client >= 1 && s.frames_to_client >= 1);
    assert_eq!(s.role, "fixed");
    let (st, _, body) = http(p.addr, &get("/metrics", "")).await;
    assert_eq!(st, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("zigral_proxy_bytes_total{direction=\"to_client\"} 1234"),
        "{text}"
    );
    assert!(
        text.contains("zigral_proxy_session_rtt_seconds{session=\"1\""),
        "{text}"
    );
    assert!(text.contains("zigral_proxy_sessions_open 1"), "{text}");
    let (st, _, body) = http(p.addr, &get("/sessions", "")).await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["sessions"][0]["bytes_to_client"], 1234);
    reader.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sessions_with_1001_and_drains() {
    let (echo, _) = echo_server().await;
    let p = start(fixed(echo)).await;
    let addr = p.addr;
    let (mut ws, _) = connect(&p.url("/websockify")).await.expect("connect");
    send(&mut ws, b"x").await;
    assert_eq!(read_bytes(&mut ws, 1).await, b"x");
    let closer = tokio::spawn(async move { close_code(&mut ws).await });
    let took = p.stop().await;
    assert_eq!(closer.await.expect("close task"), 1001);
    assert!(took < Duration::from_secs(4), "drain took {took:?}");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: zigral_proxy::cli::Args,
}

fn parse(argv: &[&str]) -> anyhow::Result<(std::net::SocketAddr, Config)> {
    let mut full = vec!["proxy"];
    full.extend(argv);
    Cli::try_parse_from(full)?.args.to_config()
}

#[test]
fn command_line_is_websockify_compatible_and_safe() {
    let (addr, cfg) = parse(&["6081", "localhost:5900"]).expect("drop-in");
    assert_eq!(addr.to_string(), "127.0.0.1:6081");
    assert!(matches!(cfg.routing, Routing::Fixed(Target::Tcp(ref t)) if t == "localhost:5900"));
    let (_, cfg) = parse(&["127.0.0.1:6081", "unix:/run/vnc.sock", "--no-auth"]).expect("unix");
    assert!(matches!(cfg.routing, Routing::Fixed(Target::Unix(_))));
    let err = parse(&["0.0.0.0:6081", "localhost:5900"]).expect_err("public no-auth");
    assert!(err.to_string().contains("--force"), "{err}");
    assert!(parse(&["0.0.0.0:6081", "localhost:5900", "--force"]).is_ok());
    let dir = tempfile::tempdir().expect("tempdir");
    let sd = dir.path().to_str().expect("utf8");
    let (_, cfg) = parse(&["6081", "--state-dir", sd, "--vnc-base", "5910"]).expect("token mode");
    assert!(matches!(
        cfg.routing,
        Routing::Token {
            vnc_base: 5910,
            leases: Some(_),
            control: Some(_),
            live_view: Some(_),
            ..
        }
    ));
    assert!(dir.path().join("proxy-signing.key").exists());
    assert!(parse(&["6081", "localhost:5900", "--state-dir", sd]).is_err());
    assert!(
        parse(&["6081"])
            .expect_err("nothing")
            .to_string()
            .contains("TARGET")
    );
    assert!(parse(&["6081", "--state-dir", sd, "--no-auth"]).is_err());
    assert!(parse(&["6081", "nonsense"]).is_err());
    assert!(parse(&["abc", "localhost:5900"]).is_err());
    assert!(parse(&["6081", "localhost:5900", "--web", "/nonexistent/dir"]).is_err());
    assert!(parse(&["6081", "localhost:5900", "--allow-origin", "evil"]).is_err());
    assert!(parse(&["6081", "localhost:5900", "--ssl-only"]).is_err());
    assert!(parse(&["6081", "localhost:5900", "--heartbeat", "-1"]).is_err());
    let (_, cfg) = parse(&[
        "6081",
        "localhost:5900",
        "--allow-origin",
        "*",
        "--heartbeat",
        "0",
    ])
    .expect("ok");
    assert_eq!(cfg.origins, OriginPolicy::Any);
    assert_eq!(cfg.heartbeat, None);

    // --print-url: a viewer URL whose token the proxy accepts for that desktop and role.
    let cli = Cli::try_parse_from([
        "proxy",
        "127.0.0.1:6081",
        "--state-dir",
        sd,
        "--print-url",
        "2",
        "--url-role",
        "view",
    ])
    .expect("parse");
    let url = cli.args.viewer_url().expect("url").expect("some");
    assert!(url.starts_with("http://127.0.0.1:6081/?token=v1."), "{url}");
    assert!(url.ends_with("&desktop=2"), "{url}");
    let token = url
        .split("token=")
        .nth(1)
        .and_then(|t| t.split('&').next())
        .expect("token");
    let key = SigningKey::load_or_create(dir.path()).expect("key");
    let claims = key.verify(token).expect("valid token");
    assert_eq!((claims.desktop, claims.role), (2, Role::View));
    let bad = Cli::try_parse_from([
        "proxy",
        "6081",
        "--state-dir",
        sd,
        "--print-url",
        "0",
        "--url-role",
        "admin",
    ])
    .expect("parse");
    assert!(bad.args.viewer_url().is_err());
    assert!(Cli::try_parse_from(["proxy", "6081", "--print-url", "0"]).is_err());
}

/// The server→client path (spliced for plain TCP clients) carries a large stream byte for byte
/// in well-formed frames, also across a client that stops reading for a while; a frame sent
/// in the same packet as the handshake still reaches the VNC server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_stream_arrives_intact_and_pipelined_input_is_kept() {
    const TOTAL: usize = 6 * 1024 * 1024;
    let pattern = |i: usize| (i % 251) as u8;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut hello = [0u8; 5];
        s.read_exact(&mut hello).await.expect("pipelined frame");
        assert_eq!(&hello, b"hello");
        let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
        for chunk in data.chunks(100_003) {
            s.write_all(chunk).await.expect("target write");
        }
    });
    let p = start(fixed(target)).await;
    let mut s = TcpStream::connect(p.addr).await.expect("connect");
    let mut req = format!(
        "GET /websockify HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: binary\r\n\r\n",
        p.addr
    )
    .into_bytes();
    req.extend(frame(true, 2, b"hello"));
    s.write_all(&req).await.expect("write");

    let mut buf = Vec::new();
    let mut b = vec![0u8; 256 * 1024];
    let mut got = Vec::with_capacity(TOTAL);
    let mut paused = false;
    let close = loop {
        // Parse the complete frames at the front of `buf` (after the response head).
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n")
            && buf.starts_with(b"HTTP/1.1 101")
        {
            buf.drain(..i + 4);
        }
        let mut close = None;
        while !buf.starts_with(b"HTTP") && buf.len() >= 2 {
            assert_eq!(buf[0] & 0xf0, 0x80, "FIN set, no reserved bits");
            assert_eq!(buf[1] & 0x80, 0, "server frames are not masked");
            let (len, at) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                127 if buf.len() >= 10 => {
                    let mut x = [0u8; 8];
                    x.copy_from_slice(&buf[2..10]);
                    (u64::from_be_bytes(x) as usize, 10)
                }
                126 | 127 => break,
                n => (usize::from(n), 2),
            };
            if buf.len() < at + len {
                break;
            }
            match buf[0] & 0x0f {
                2 => got.extend_from_slice(&buf[at..at + len]),
                8 => close = Some(u16::from_be_bytes([buf[at], buf[at + 1]])),
                op => panic!("unexpected opcode {op}"),
            }
            buf.drain(..at + len);
        }
        if let Some(c) = close {
            break c;
        }
        if !paused && got.len() > TOTAL / 4 {
            // Stop reading so the proxy's writes to this client block mid-frame.
            paused = true;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut b))
            .await
            .expect("read timed out")
            .expect("read");
        assert!(n > 0, "eof before the close frame ({} bytes)", got.len());
        buf.extend_from_slice(&b[..n]);
    };
    assert_eq!(close, 1000, "target closed normally");
    assert_eq!(got.len(), TOTAL);
    assert!(
        got.iter().enumerate().all(|(i, &x)| x == pattern(i)),
        "payload corrupted"
    );
    eventually(10, "session end", || p.sessions_open() == 0).await;
    let t = p.proxy.metrics().totals();
    assert_eq!(t.bytes_to_client, TOTAL as u64);
    assert_eq!(t.bytes_from_client, 5);
}
