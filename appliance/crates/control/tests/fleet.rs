//! The appliance in a fleet behind HAProxy (issue 17), through the real HTTP API and the real
//! agent-check port of port-0 control planes:
//! - `GET /api/v1/info` names the appliance and counts its free desktop slots (managed
//!   desktops, spawned through a stand-in zigral-init), and the agent answers that share
//!   (`100%`, `50%`, `0%` when full);
//! - `PUT /api/v1/admin/draining`: administrators only (403 otherwise), bad bodies change
//!   nothing; on: the agent answers `drain`, creating a session gets 503
//!   `appliance_draining`, existing sessions keep working, the switch is audited and
//!   published as `appliance.draining`; off: the agent answers `ready N%` and sessions can be
//!   created again; a restart on the same state dir keeps it on;
//! - a bad `appliance_name` and an `agent_listen` port that cannot be had stop `zigral
//!   control` at startup with a sentence saying why.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use common::{ADMIN_PASSWORD, Ws};
use futures_util::StreamExt;
use reqwest::{Client, Method};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite;
use zigral_control::config::DesktopMode;
use zigral_control::fleet::{self, Agent};
use zigral_control::{AppState, Config};
use zigral_init_protocol::{
    Destroyed, GroupStatus, Reply, Request, ServiceState, ServiceStatus, Spawned, Status,
};

const DRAINING: &str = "/api/v1/admin/draining";

/// Connects to the agent port and reads what it says until it closes (10 s bound).
async fn agent(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("the agent answers and closes within 10 s")
        .unwrap();
    out
}

/// Starts the agent of `st` as `zigral control` does.
async fn start_agent(st: &AppState) -> Agent {
    let l = fleet::bind_agent(st.config())
        .await
        .unwrap()
        .expect("agent_listen is set");
    fleet::serve_agent(l, st.clone()).unwrap()
}

/// The next event of `kind` on an events websocket (10 s failure bound).
async fn next_event(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("event within 10 s")
            .expect("stream open")
            .expect("frame");
        if let tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["kind"] == kind {
                return v;
            }
        }
    }
}

/// A stand-in zigral-init on `path`: spawn, status (every service of a spawned desktop is
/// ready at once), limits and destroy.
fn fake_init(path: &Path) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    let running: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let running = running.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = sock.into_split();
                let mut line = String::new();
                if BufReader::new(rd).read_line(&mut line).await.is_err() {
                    return;
                }
                let reply = match Request::parse(&line) {
                    Ok(Request::Status) => Reply::ok(&status(&running.lock().unwrap())),
                    Ok(Request::Spawn { instance, .. }) => {
                        running.lock().unwrap().insert(instance);
                        Reply::ok(&Spawned {
                            group: format!("desktop@{instance}"),
                            services: vec![format!("xvfb@{instance}")],
                        })
                    }
                    Ok(Request::Destroy { instance, .. }) => {
                        running.lock().unwrap().remove(&instance);
                        Reply::ok(&Destroyed {
                            destroyed: format!("desktop@{instance}"),
                            services: vec![format!("xvfb@{instance}")],
                        })
                    }
                    Ok(Request::Limits { group, limits }) => Reply::ok(&GroupStatus {
                        name: group,
                        template: "desktop".into(),
                        instance: 0,
                        params: Default::default(),
                        limits,
                        cgroup: None,
                        memory_bytes: None,
                        cpu_usec: None,
                        tasks: None,
                    }),
                    Ok(_) => Reply::Err("not in the stand-in zigral-init".into()),
                    Err(e) => Reply::Err(e),
                };
                let _ = wr.write_all(reply.to_line().as_bytes()).await;
            });
        }
    })
}

fn status(running: &BTreeSet<u32>) -> Status {
    Status {
        services: running
            .iter()
            .map(|n| ServiceStatus {
                name: format!("xvfb@{n}"),
                group: Some(format!("desktop@{n}")),
                state: ServiceState::Ready,
                pid: Some(1000 + *n as i32),
                restarts: 0,
                last_exit: None,
                next_restart_ms: None,
                backoff_ms: None,
                uptime_ms: Some(10),
                ready_ms: Some(1),
                ready_at_ms: Some(1),
                paused: false,
            })
            .collect(),
        groups: running
            .iter()
            .map(|n| GroupStatus {
                name: format!("desktop@{n}"),
                template: "desktop".into(),
                instance: *n,
                params: Default::default(),
                limits: Default::default(),
                cgroup: None,
                memory_bytes: None,
                cpu_usec: None,
                tasks: None,
            })
            .collect(),
        shutting_down: false,
        boot: None,
    }
}

/// Draining audit entries, oldest first.
async fn draining_audit(srv: &common::Server, admin: &str) -> Vec<Value> {
    let (s, v) = srv
        .call(Method::GET, "/api/v1/admin/audit", Some(admin), None)
        .await;
    assert_eq!(s, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "appliance.draining")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_agent_and_draining_switch() {
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("init.sock");
    let _init = fake_init(&sock);
    let srv = common::start(|c| {
        c.init_socket = sock.clone();
        c.desktops.mode = DesktopMode::Managed;
        c.desktops.proxy_url = String::new();
        c.desktops.warm_pool = 0;
        c.desktops.max_desktops = 2;
        c.appliance_name = "zigral-7".into();
        c.agent_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    srv.state.vdi().start();
    let agent_port = start_agent(&srv.state).await;
    let port = agent_port.local_addr();
    let admin = srv.admin().await;
    let alice = srv.user(&admin, "alice").await;
    let bob = srv.user(&admin, "bob").await;
    let carol = srv.user(&admin, "carol").await;
    let srv_ref = &srv;
    let info = || async move {
        let (s, v) = srv_ref.call(Method::GET, "/api/v1/info", None, None).await;
        assert_eq!(s, 200, "{v}");
        v["appliance"].clone()
    };

    // Empty: the name, both slots free, full weight.
    assert_eq!(
        info().await,
        json!({"name": "zigral-7", "draining": false, "desktops": {"max": 2, "free": 2},
               "prefix": null, "fleet": null})
    );
    assert_eq!(agent(port).await, "100%\n");
    // Each session of a new user takes a slot; full is 0% (no new work from the pool).
    let alice_sid = srv.session(&alice, None).await;
    assert_eq!(info().await["desktops"], json!({"max": 2, "free": 1}));
    assert_eq!(agent(port).await, "50%\n");
    let bob_sid = srv.session(&bob, None).await;
    assert_eq!(info().await["desktops"], json!({"max": 2, "free": 0}));
    assert_eq!(agent(port).await, "0%\n");
    let (s, v) = srv
        .call(
            Method::DELETE,
            &format!("/api/v1/sessions/{bob_sid}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(s, 204, "{v}");
    assert_eq!(agent(port).await, "50%\n");

    let (s, v) = srv.call(Method::GET, DRAINING, Some(&admin), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"appliance": "zigral-7", "draining": false, "sessions": 1,
               "desktops": {"max": 2, "free": 1}})
    );

    // Not an administrator: 403, nothing changes.
    let (s, v) = srv.call(Method::GET, DRAINING, Some(&alice), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, v) = srv
        .call(
            Method::PUT,
            DRAINING,
            Some(&alice),
            Some(json!({"draining": true})),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, _) = srv
        .call(Method::PUT, DRAINING, None, Some(json!({"draining": true})))
        .await;
    assert_eq!(s, 401);
    // Bad bodies: the crate's answers for bad JSON (422 invalid, 400, 415), nothing changes.
    for bad in [
        json!({"draining": "yes"}),
        json!({}),
        json!({"draining": true, "extra": 1}),
        json!([true]),
        json!(true),
    ] {
        let (s, v) = srv
            .call(Method::PUT, DRAINING, Some(&admin), Some(bad.clone()))
            .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (422, Some("invalid")),
            "{bad}: {v}"
        );
    }
    let r = srv
        .http
        .put(srv.url(DRAINING))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"draining\": tru")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = srv
        .http
        .put(srv.url(DRAINING))
        .bearer_auth(&admin)
        .body("{\"draining\": true}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // The generic configuration API does not set or clear it behind the switch's back.
    let cfg_key = format!("/api/v1/admin/config/{}", fleet::DRAINING_KEY);
    let (s, v) = srv
        .call(
            Method::PUT,
            &cfg_key,
            Some(&admin),
            Some(json!({"on": true})),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (409, Some("conflict")), "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("PUT /api/v1/admin/draining"),
        "{v}"
    );
    let (s, _) = srv.call(Method::DELETE, &cfg_key, Some(&admin), None).await;
    assert_eq!(s, 409);
    assert_eq!(info().await["draining"], false);
    assert_eq!(
        agent(port).await,
        "50%\n",
        "not drained by refused requests"
    );
    assert!(draining_audit(&srv, &admin).await.is_empty());

    // Drain: published to everyone, audited, the agent says drain, new sessions are refused
    // with a sentence pointing at the fleet address; alice's session keeps working.
    let mut admin_events = srv.events(&admin).await;
    next_event(&mut admin_events, "hello").await;
    let mut alice_events = srv.events(&alice).await;
    next_event(&mut alice_events, "hello").await;
    let (s, v) = srv
        .call(
            Method::PUT,
            DRAINING,
            Some(&admin),
            Some(json!({"draining": true})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"appliance": "zigral-7", "draining": true, "sessions": 1,
               "desktops": {"max": 2, "free": 1}})
    );
    for ws in [&mut admin_events, &mut alice_events] {
        let ev = next_event(ws, "appliance.draining").await;
        assert_eq!(ev["data"]["draining"], true, "{ev}");
        assert_eq!(ev["data"]["appliance"], "zigral-7", "{ev}");
        assert_eq!(ev["data"]["by_name"], "admin", "{ev}");
    }
    assert_eq!(agent(port).await, "drain\n");
    assert_eq!(
        agent(port).await,
        "drain\n",
        "on every answer while draining"
    );
    assert_eq!(info().await["draining"], true);
    let (s, v) = srv.call(Method::GET, DRAINING, Some(&admin), None).await;
    assert_eq!((s, &v["draining"]), (200, &json!(true)), "{v}");
    let (s, v) = srv
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(&carol),
            Some(json!({"title": "x"})),
        )
        .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"], "appliance_draining", "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("zigral-7") && msg.contains("fleet address"),
        "{msg}"
    );
    let (s, v) = srv
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{alice_sid}/messages"),
            Some(&alice),
            Some(json!({"role": "user", "content": [{"type": "text", "text": "still here"}]})),
        )
        .await;
    assert_eq!(s, 201, "existing sessions keep working: {v}");
    let (s, v) = srv
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{alice_sid}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!((s, v["message_count"].as_u64()), (200, Some(1)), "{v}");
    // Draining again changes nothing (audited, not published).
    let (s, _) = srv
        .call(
            Method::PUT,
            DRAINING,
            Some(&admin),
            Some(json!({"draining": true})),
        )
        .await;
    assert_eq!(s, 200);
    let audit = draining_audit(&srv, &admin).await;
    let details: Vec<&Value> = audit.iter().map(|e| &e["detail"]).collect();
    assert_eq!(
        details,
        [
            &json!({"draining": true, "changed": true}),
            &json!({"draining": true, "changed": false})
        ],
        "{audit:?}"
    );
    assert_eq!(audit[0]["target"], "zigral-7");

    // Undrain: `ready` with the weight (this process said drain), sessions again.
    let (s, v) = srv
        .call(
            Method::PUT,
            DRAINING,
            Some(&admin),
            Some(json!({"draining": false})),
        )
        .await;
    assert_eq!((s, &v["draining"]), (200, &json!(false)), "{v}");
    let ev = next_event(&mut admin_events, "appliance.draining").await;
    assert_eq!(ev["data"]["draining"], false, "{ev}");
    assert_eq!(agent(port).await, "ready 50%\n");
    srv.session(&carol, None).await;
    assert_eq!(agent(port).await, "ready 0%\n");
    assert_eq!(
        info().await,
        json!({"name": "zigral-7", "draining": false, "desktops": {"max": 2, "free": 0},
               "prefix": null, "fleet": null})
    );

    // Documented in the OpenAPI document.
    let (s, doc) = srv
        .call(Method::GET, "/api/v1/openapi.json", Some(&admin), None)
        .await;
    assert_eq!(s, 200);
    let path = &doc["paths"]["/api/v1/admin/draining"];
    assert!(path["get"].is_object() && path["put"].is_object(), "{path}");
    assert!(
        doc["components"]["schemas"]["ApplianceInfo"]["properties"]["draining"].is_object(),
        "{}",
        doc["components"]["schemas"]["Info"]
    );
    assert!(
        doc["paths"]["/api/v1/sessions"]["post"]["responses"]["503"]["description"]
            .as_str()
            .unwrap()
            .contains("appliance_draining")
    );
}

/// A control plane on `dir` (static desktops) with its agent, stoppable so that the same
/// state dir can be opened again.
struct Node {
    http: Client,
    base: String,
    agent: Agent,
    stop: tokio::sync::oneshot::Sender<()>,
    serve: tokio::task::JoinHandle<()>,
}

/// Opens the store of `dir` once the previous control plane on it let go of it (its store's
/// writer thread ends after the last handle is dropped; 10 s failure bound).
async fn open_store(dir: &Path) -> zigral_store::Store {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match zigral_store::Store::open_in(dir) {
            Ok(s) => return s,
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "store still held");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the previous control plane never let go of its store: {e}"),
        }
    }
}

async fn boot(dir: &Path) -> Node {
    let mut cfg = Config::with_state_dir(dir);
    cfg.admin_password = Some(ADMIN_PASSWORD.into());
    cfg.require_supervisor = false;
    cfg.desktops.mode = DesktopMode::Static;
    cfg.appliance_name = "zigral-8".into();
    cfg.agent_listen = Some("127.0.0.1:0".parse().unwrap());
    let store = open_store(dir).await;
    let key = zigral_token::SigningKey::load_or_create(dir).unwrap();
    zigral_control::bootstrap::ensure_admin(&store, cfg.admin_password.as_deref())
        .await
        .unwrap();
    let state = AppState::new(cfg, store, key);
    let agent = start_agent(&state).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(async move {
        zigral_control::serve(listener, state, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Node {
        http: Client::new(),
        base,
        agent,
        stop,
        serve,
    }
}

impl Node {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let s = r.status().as_u16();
        (
            s,
            serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null),
        )
    }

    async fn admin(&self) -> String {
        let (s, v) = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    /// Stops serving and waits until the server (and its state, with the store) is gone.
    async fn halt(self) {
        self.agent.stop().await;
        drop(self.http);
        let _ = self.stop.send(());
        self.serve.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_survives_a_restart_and_undraining_says_ready() {
    let dir = tempfile::tempdir().unwrap();
    let node = boot(dir.path()).await;
    let admin = node.admin().await;
    // Static desktops: nothing is leased, every slot is free.
    assert_eq!(agent(node.agent.local_addr()).await, "100%\n");
    let (s, v) = node
        .call(
            Method::PUT,
            DRAINING,
            Some(&admin),
            Some(json!({"draining": true})),
        )
        .await;
    assert_eq!((s, &v["draining"]), (200, &json!(true)), "{v}");
    assert_eq!(agent(node.agent.local_addr()).await, "drain\n");
    node.halt().await;

    // The same state dir, a new process: still draining.
    let node = boot(dir.path()).await;
    let port = node.agent.local_addr();
    let admin = node.admin().await;
    let (s, v) = node.call(Method::GET, DRAINING, Some(&admin), None).await;
    assert_eq!((s, &v["draining"]), (200, &json!(true)), "{v}");
    let (_, v) = node.call(Method::GET, "/api/v1/info", None, None).await;
    assert_eq!(v["appliance"]["draining"], true, "{v}");
    assert_eq!(agent(port).await, "drain\n");
    let (s, v) = node
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (503, Some("appliance_draining")),
        "{v}"
    );

    let (s, v) = node
        .call(
            Method::PUT,
            DRAINING,
            Some(&admin),
            Some(json!({"draining": false})),
        )
        .await;
    assert_eq!((s, &v["draining"]), (200, &json!(false)), "{v}");
    assert_eq!(agent(port).await, "ready 100%\n");
    let (s, v) = node
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    node.halt().await;

    // A process that never said drain never says ready (an operator's runtime-API drain
    // stays).
    let node = boot(dir.path()).await;
    assert_eq!(agent(node.agent.local_addr()).await, "100%\n");
    node.halt().await;
}

/// `zigral control`'s arguments.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: zigral_control::cli::Args,
}

/// Runs `zigral control` with `args` (after `--state-dir DIR --listen 127.0.0.1:0`) and
/// returns the error it stopped with, as `main` prints it (with its causes).
async fn startup_error(dir: &Path, args: &[&str]) -> String {
    let mut argv = vec!["zigral-control", "--state-dir", dir.to_str().unwrap()];
    argv.extend(["--listen", "127.0.0.1:0", "--desktop-mode", "static"]);
    argv.extend(["--require-supervisor", "false"]);
    argv.extend(args);
    let cli = Cli::try_parse_from(&argv).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), zigral_control::cli::run(cli.args))
        .await
        .expect("refused at once");
    format!("{:#}", r.expect_err("refused"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_name_and_busy_agent_port_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["Zigral-3", "zigral_3", "-zigral", "zigral.example"] {
        let e = startup_error(dir.path(), &[&format!("--appliance-name={bad}")]).await;
        assert!(
            e.contains(&format!("appliance_name '{bad}' is not a DNS label")),
            "{e}"
        );
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let e = startup_error(
        dir.path(),
        &["--appliance-name", "zigral-9", "--agent-listen", &addr],
    )
    .await;
    assert!(
        e.contains(&format!(
            "agent_listen: cannot listen for HAProxy's agent-check on {addr}"
        )) && e.contains("in use"),
        "{e}"
    );
    let e = startup_error(dir.path(), &["--agent-listen", "8001"]).await;
    assert!(e.contains("agent_listen '8001'"), "{e}");
}
