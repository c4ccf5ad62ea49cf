//! VM appliance image tests: boot the real qcow2 under QEMU (TCG) and use it the way people do:
//! the control plane and the noVNC proxy through QEMU's forwarded ports (network profile), the
//! same through an SSH tunnel (dev profile, listeners on 127.0.0.1), data surviving a clean
//! reboot (ACPI power button) and a power cut (QEMU killed during writes), `packer validate`,
//! and an image built by Packer booting as a sealed first boot.
//!
//! Every test that needs QEMU, Packer or root is `#[ignore]`d and run by `make test`
//! (`scripts/test.sh`: `--ignored` after `make image`); when run, a missing tool is a failure
//! with the install command, never a silent pass.
//!
//! The image comes from `$ZIGRAL_IMAGE`, else `image/build.sh` is run (idempotent: "up to date"
//! in about a second when `make image` built it already) with this build's binaries.
//! One VM at a time (a process-wide lock): TCG on two cores is slow enough without contention.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zigral_tests::api::{create_session, http, json_ok, login, login_as, rfb_greeting, view_token};
use zigral_tests::{Proc, bin, free_port, repo_root, wait_for};

/// Boot to control-plane ready under TCG on a loaded 2-core machine: generous.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// Clean power-off (services stopped in order, redb closed, sync).
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(240);

/// Fails the test, naming what is missing and how to install it, unless every tool is on PATH.
fn require_tools(tools: &[&str]) {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "missing tools {missing:?}: install them with `scripts/install-deps.sh image` (as root)"
    );
}

const VM_TOOLS: &[&str] = &[
    "qemu-system-x86_64",
    "qemu-img",
    "mmdebstrap",
    "mkfs.ext4",
    "ssh",
];

/// Fails the test unless it runs as root (the image build needs it).
fn require_root(what: &str) {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "{what} needs root: run `make test` as root, or set ZIGRAL_IMAGE to a built image"
    );
}

fn vm_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "zigral-image-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// The image under test (built once per test process).
fn image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            if let Ok(p) = std::env::var("ZIGRAL_IMAGE") {
                let p = PathBuf::from(p);
                assert!(p.is_file(), "ZIGRAL_IMAGE={} does not exist", p.display());
                return p;
            }
            require_root("building the VM image (mmdebstrap)");
            let bin_dir = bin("zigral").parent().expect("bin dir").to_owned();
            let out = run(Command::new(repo_root().join("image/build.sh"))
                .args(["--bin-dir".as_ref(), bin_dir.as_os_str()]));
            eprintln!("{out}");
            repo_root().join("image/build/zigral.qcow2")
        })
        .clone()
}

struct VmOpts<'a> {
    image: &'a Path,
    overlay: &'a Path,
    ssh_key: Option<&'a Path>,
    admin_password_file: Option<&'a Path>,
    /// Boot through the disk's GRUB instead of the image's kernel directly (boot.sh's default).
    disk_boot: bool,
}

/// One QEMU process (image/boot.sh execs qemu, so the child IS qemu).
struct Vm {
    qemu: Proc,
    serial: PathBuf,
    monitor: PathBuf,
    http: u16,
    proxy: u16,
    ssh: u16,
    started: Instant,
}

impl Vm {
    fn boot(o: &VmOpts<'_>, dir: &TempDir, tag: &str) -> Vm {
        let (http, proxy, ssh) = (free_port(), free_port(), free_port());
        let serial = dir.path(&format!("{tag}-serial.log"));
        let monitor = dir.path(&format!("{tag}-monitor.sock"));
        let mut cmd = Command::new(repo_root().join("image/boot.sh"));
        cmd.arg("--image")
            .arg(o.image)
            .arg("--overlay")
            .arg(o.overlay)
            .args(["--accel", "tcg"])
            .args(["--http-port", &http.to_string()])
            .args(["--proxy-port", &proxy.to_string()])
            .args(["--ssh-port", &ssh.to_string()])
            .arg("--serial-log")
            .arg(&serial)
            .arg("--monitor")
            .arg(&monitor);
        if let Some(k) = o.ssh_key {
            cmd.arg("--ssh-key").arg(k);
        }
        if let Some(p) = o.admin_password_file {
            cmd.arg("--admin-password-file").arg(p);
        }
        if o.disk_boot {
            cmd.arg("--disk-boot");
        }
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let qemu = Proc::spawn(cmd);
        Vm {
            qemu,
            serial,
            monitor,
            http,
            proxy,
            ssh,
            started: Instant::now(),
        }
    }

    fn serial_text(&self) -> String {
        std::fs::read(&self.serial)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn tail(&self) -> String {
        let s = self.serial_text();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.qemu.child.try_wait() {
            panic!("QEMU exited early ({st}); serial console:\n{}", self.tail());
        }
    }

    /// Polls `f` until it returns Some, failing with the serial console tail on timeout.
    fn wait<T>(&mut self, timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            self.assert_running();
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}; serial console:\n{}",
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until `/readyz` on host port `port` answers 200; returns seconds since QEMU started.
    fn wait_ready(&mut self, port: u16) -> f64 {
        self.wait(BOOT_TIMEOUT, "control plane /readyz", || {
            readyz(port).then_some(())
        });
        self.started.elapsed().as_secs_f64()
    }

    /// Presses the ACPI power button through the QEMU monitor.
    fn power_button(&self) {
        let mut s = UnixStream::connect(&self.monitor).expect("QEMU monitor socket");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut banner = [0u8; 256];
        let _ = s.read(&mut banner);
        s.write_all(b"system_powerdown\n").expect("monitor write");
    }

    /// Waits for QEMU to exit by itself (the guest powered off); returns its exit status.
    fn wait_poweroff(&mut self, timeout: Duration) -> std::process::ExitStatus {
        match self.qemu.wait_timeout(timeout) {
            Some(st) => st,
            None => panic!(
                "the VM did not power off within {timeout:?}; serial console:\n{}",
                self.tail()
            ),
        }
    }
}

/// One `/readyz` probe with short timeouts. QEMU's user network accepts on the host port at
/// once and forwards the SYN to the guest, retrying with a growing backoff while nothing
/// listens there: a probe that waited would see the control plane up to ~10 s late.
fn readyz(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn post_message(port: u16, token: &str, session: &str, text: &str) -> std::io::Result<u16> {
    http(
        port,
        "POST",
        &format!("/api/v1/sessions/{session}/messages"),
        Some(token),
        Some(&json!({"role": "user", "content": [{"type": "text", "text": text}]})),
    )
    .map(|(st, _)| st)
}

/// Every message text of a session, in order (pages of 1000).
fn message_texts(port: u16, token: &str, session: &str) -> Vec<String> {
    let mut texts = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let q = match after {
            Some(a) => format!("?limit=1000&after={a}"),
            None => "?limit=1000".to_owned(),
        };
        let page = json_ok(
            port,
            "GET",
            &format!("/api/v1/sessions/{session}/messages{q}"),
            Some(token),
            None,
        );
        for m in page["messages"].as_array().expect("messages array") {
            for part in m["content"].as_array().into_iter().flatten() {
                if let Some(t) = part["text"].as_str() {
                    texts.push(t.to_owned());
                }
            }
        }
        match page["next_after"].as_u64() {
            Some(n) => after = Some(n),
            None => return texts,
        }
    }
}

/// Clicks and takes a screenshot through the action API (native schema of zigral-actions), and
/// checks the click is in the action log.
fn click_and_screenshot(port: u16, token: &str, session: &str) {
    let actions = format!("/api/v1/sessions/{session}/actions");
    let r = json_ok(
        port,
        "POST",
        &actions,
        Some(token),
        Some(&json!({"action": "left_click", "x": 100, "y": 100})),
    );
    assert_eq!(r["ok"], true, "left_click: {r}");
    let log = json_ok(port, "GET", &actions, Some(token), None);
    assert!(log.to_string().contains("left_click"), "action log: {log}");
    let (st, body) = http(
        port,
        "GET",
        &format!("/api/v1/sessions/{session}/screenshot"),
        Some(token),
        None,
    )
    .expect("screenshot request");
    assert_eq!(st, 200, "screenshot: {body}");
    assert!(
        body.len() > 1000,
        "screenshot too small ({} bytes): {body}",
        body.len()
    );
}

fn admin_password_from_serial(vm: &mut Vm) -> String {
    let marker = "admin password (user 'admin'): ";
    let serial = vm.serial.clone();
    vm.wait(
        BOOT_TIMEOUT,
        "the first-boot admin password on the console",
        || {
            let s = vm_serial(&serial);
            s.lines()
                .find_map(|l| l.split_once(marker).map(|(_, p)| p.trim().to_owned()))
        },
    )
}

fn vm_serial(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn ssh_keypair(dir: &TempDir) -> PathBuf {
    let key = dir.path("id_ed25519");
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "zigral-image-test",
            "-f",
        ])
        .arg(&key));
    key
}

fn ssh_base(key: &Path, port: u16) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-i").arg(key).args(["-p", &port.to_string()]).args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=20",
        "-o",
        "LogLevel=ERROR",
    ]);
    c
}

/// Network profile, booted from the disk itself (GRUB): readiness, login, session, actions,
/// RFB through the proxy; then the ACPI power button powers it off cleanly; a second boot
/// still has the messages and the same admin password (printed only on the first boot).
#[test]
#[ignore = "boots the VM image under QEMU for minutes: run by scripts/test.sh (make test) with --ignored"]
fn network_profile_boot_use_power_button_reboot() {
    require_tools(VM_TOOLS);
    let _g = vm_lock();
    let image = image();
    let size = std::fs::metadata(&image).expect("image size").len();
    eprintln!("image_qcow2_mib: {:.0}", size as f64 / f64::from(1 << 20));
    let dir = TempDir::new("net");
    let overlay = dir.path("disk.qcow2");
    let opts = VmOpts {
        image: &image,
        overlay: &overlay,
        ssh_key: None,
        admin_password_file: None,
        disk_boot: true,
    };
    let mut vm = Vm::boot(&opts, &dir, "boot1");
    let password = admin_password_from_serial(&mut vm);
    let ready_s = vm.wait_ready(vm.http);
    eprintln!("boot_grub_to_control_ready_s: {ready_s:.1}");

    assert!(
        login_fails(vm.http, "wrong-password-123"),
        "a wrong password must not log in"
    );
    // The web app is served at / (the image carries ui/dist/app), its assets cached for good.
    let (st, page) = http(vm.http, "GET", "/", None, None).expect("GET /");
    assert!(
        st == 200 && page.contains("<title>Zigral</title>"),
        "the web app at /: {st} {page}"
    );
    let token = login(vm.http, &password);
    let session = create_session(vm.http, &token, "image test");
    click_and_screenshot(vm.http, &token, &session);
    // The boot timeline zigral-init prints on the console once everything is up (reported
    // here, not asserted on: TCG's speed depends on the machine).
    let serial = vm.serial.clone();
    let timeline = vm.wait(
        BOOT_TIMEOUT,
        "the boot timeline on the serial console",
        || {
            let text = String::from_utf8_lossy(&std::fs::read(&serial).ok()?).into_owned();
            text.lines()
                .find(|l| l.contains("boot timeline: kernel "))
                .map(|l| l.trim().to_owned())
        },
    );
    eprintln!("{timeline}");
    let vt = view_token(vm.http, &token, &session);
    let proxy_port = vm.proxy;
    let greeting = vm.wait(
        Duration::from_secs(300),
        "RFB greeting through the proxy",
        || rfb_greeting(proxy_port, &vt).ok(),
    );
    assert!(greeting.starts_with("RFB 003.008"), "greeting {greeting:?}");
    let (st, _) = http(vm.proxy, "GET", "/websockify", None, None).unwrap_or((0, String::new()));
    assert_ne!(
        st, 101,
        "the proxy must refuse a connection without a token"
    );

    let sent: Vec<String> = (0..5).map(|i| format!("before reboot #{i}")).collect();
    for m in &sent {
        assert_eq!(
            post_message(vm.http, &token, &session, m).expect("post"),
            201
        );
    }

    vm.power_button();
    let st = vm.wait_poweroff(POWEROFF_TIMEOUT);
    assert!(st.success(), "QEMU exit status after power-off: {st}");
    // zigral-init's ordered stop: the control plane (redb) first, then everything, then poweroff.
    let console = vm.serial_text();
    for needle in [
        "power button",
        "control stopped",
        "all services stopped",
        "Power down",
    ] {
        assert!(
            console.contains(needle),
            "no {needle:?} in the shutdown trace:\n{}",
            vm.tail()
        );
    }

    let mut vm2 = Vm::boot(&opts, &dir, "boot2");
    vm2.wait_ready(vm2.http);
    let token = login(vm2.http, &password);
    let texts = message_texts(vm2.http, &token, &session);
    assert_eq!(texts, sent, "messages after a clean reboot");
    assert!(
        !vm2.serial_text().contains("admin password (user 'admin')"),
        "the admin password must be printed only on the first boot"
    );
    vm2.power_button();
    vm2.wait_poweroff(POWEROFF_TIMEOUT);
}

fn login_fails(port: u16, password: &str) -> bool {
    matches!(
        http(
            port,
            "POST",
            "/api/v1/auth/login",
            None,
            Some(&json!({"username": "admin", "password": password})),
        ),
        Ok((401 | 403, _))
    )
}

/// Dev profile built with a baked SSH key and admin password: the forwarded control-plane port
/// is NOT reachable (listeners on 127.0.0.1), everything works through `ssh -N -L`, and the
/// admin endpoint powers the VM off.
#[test]
#[ignore = "boots the VM image under QEMU for minutes: run by scripts/test.sh (make test) with --ignored"]
fn dev_profile_ssh_tunnel() {
    require_tools(VM_TOOLS);
    let _g = vm_lock();
    let base = image();
    let dir = TempDir::new("dev");
    let key = ssh_keypair(&dir);
    let pw_file = dir.path("admin-password");
    let password = "dev-profile-secret-42";
    std::fs::write(&pw_file, format!("{password}\n")).expect("write password");
    let dev_image = dir.path("dev.qcow2");
    let bin_dir = bin("zigral").parent().expect("bin dir").to_owned();
    run(Command::new(repo_root().join("image/build.sh"))
        .args(["--profile", "dev", "--compress", "none", "--out"])
        .arg(&dev_image)
        .arg("--ssh-key")
        .arg(key.with_extension("pub"))
        .arg("--admin-password-file")
        .arg(&pw_file)
        .arg("--bin-dir")
        .arg(&bin_dir));
    let _ = base;
    let overlay = dir.path("disk.qcow2");
    let mut vm = Vm::boot(
        &VmOpts {
            image: &dev_image,
            overlay: &overlay,
            ssh_key: None,
            admin_password_file: None,
            disk_boot: false,
        },
        &dir,
        "dev",
    );
    let (lhttp, lproxy) = (free_port(), free_port());
    let ssh_port = vm.ssh;
    let mut tunnel: Option<Proc> = None;
    let ready_s = {
        let key = key.clone();
        let started = vm.started;
        vm.wait(BOOT_TIMEOUT, "/readyz through the SSH tunnel", || {
            if tunnel
                .as_mut()
                .is_none_or(|t| t.child.try_wait().ok().flatten().is_some())
            {
                let mut c = ssh_base(&key, ssh_port);
                c.args([
                    "-N",
                    "-o",
                    "ExitOnForwardFailure=yes",
                    "-o",
                    "ServerAliveInterval=5",
                    "-L",
                    &format!("127.0.0.1:{lhttp}:127.0.0.1:8000"),
                    "-L",
                    &format!("127.0.0.1:{lproxy}:127.0.0.1:6081"),
                    "zigral@127.0.0.1",
                ]);
                c.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                tunnel = Some(Proc::spawn(c));
                std::thread::sleep(Duration::from_secs(2));
            }
            matches!(http(lhttp, "GET", "/readyz", None, None), Ok((200, _))).then_some(())
        });
        started.elapsed().as_secs_f64()
    };
    eprintln!("dev_boot_to_control_ready_s: {ready_s:.1}");
    assert!(
        !matches!(http(vm.http, "GET", "/readyz", None, None), Ok((200, _))),
        "dev profile: the control plane must not be reachable through the VM's network"
    );
    assert!(
        !vm_serial(&vm.serial).contains("admin password (user 'admin')"),
        "a baked admin password must not be printed"
    );
    let token = login(lhttp, password);
    let session = create_session(lhttp, &token, "dev tunnel");
    click_and_screenshot(lhttp, &token, &session);
    let vt = view_token(lhttp, &token, &session);
    let greeting = vm.wait(
        Duration::from_secs(300),
        "RFB greeting through the tunnel",
        || rfb_greeting(lproxy, &vt).ok(),
    );
    assert!(greeting.starts_with("RFB 003.008"), "greeting {greeting:?}");

    // Figures: Chromium readiness and guest memory at idle, read over SSH.
    let started = vm.started;
    let chrome = vm.wait(BOOT_TIMEOUT, "chromium@0 ready", || {
        let out = ssh_base(&key, ssh_port)
            .args(["root@127.0.0.1", "zigral-init ctl --json status"])
            .output()
            .ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        // `ctl --json` prints the reply's result: {"services":[...]}.
        let svcs = v["services"].as_array()?.clone();
        svcs.iter()
            .any(|s| s["name"] == "chromium@0" && s["state"] == "ready")
            .then(|| started.elapsed().as_secs_f64())
    });
    eprintln!("boot_to_chrome_ready_s: {chrome:.1}");

    // Least privilege inside the VM: only zigral-init (and the system's sshd/dhclient) is
    // root; desktop 0 runs as zigral-d0 with Chromium's sandbox on; the proxy and the control
    // plane run as zigral; desktop 0's user reaches neither the state dir nor DevTools/VNC.
    let ps = run(ssh_base(&key, ssh_port).args(["root@127.0.0.1", "ps -eo user:20,args"]));
    let owner_of = |needle: &str| -> Vec<String> {
        ps.lines()
            .filter(|l| l.contains(needle))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
            .collect()
    };
    for (needle, user) in [
        ("Xvfb :0", "zigral-d0"),
        ("x11vnc -display :0", "zigral-d0"),
        ("--remote-debugging-port=9222", "zigral-d0"),
        ("zigral proxy", "zigral"),
        ("zigral control", "zigral"),
    ] {
        let owners = owner_of(needle);
        assert!(
            !owners.is_empty() && owners.iter().all(|o| o == user),
            "{needle}: run by {owners:?}, want {user}\n{ps}"
        );
    }
    assert!(
        !ps.contains("--no-sandbox"),
        "Chromium without its sandbox:\n{ps}"
    );
    let probe = |script: &str| -> (bool, String) {
        let out = ssh_base(&key, ssh_port)
            .args([
                "root@127.0.0.1",
                &format!("runuser -u zigral-d0 -- bash -c '{script}' 2>&1"),
            ])
            .output()
            .expect("ssh");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = probe("cat /var/lib/zigral/zigral.redb > /dev/null");
    assert!(
        !ok && out.contains("Permission denied"),
        "redb as zigral-d0: {out}"
    );
    let (ok, out) = probe("cat /var/lib/zigral/proxy-signing.key > /dev/null");
    assert!(
        !ok && out.contains("Permission denied"),
        "signing key as zigral-d0: {out}"
    );
    for port in [9222, 5900] {
        let (ok, out) = probe(&format!("exec 3<>/dev/tcp/127.0.0.1/{port}"));
        assert!(!ok, "port {port} reachable as zigral-d0: {out}");
    }
    let seccomp = run(ssh_base(&key, ssh_port).args([
        "root@127.0.0.1",
        "for p in $(pgrep -f -- --type=renderer); do grep Seccomp: /proc/$p/status; done",
    ]));
    assert!(
        seccomp.contains("Seccomp:\t2"),
        "no sandboxed renderer: {seccomp:?}"
    );
    let free = run(ssh_base(&key, ssh_port).args(["root@127.0.0.1", "free -m"]));
    let used = free
        .lines()
        .find(|l| l.starts_with("Mem:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("no Mem: line in `free -m`:\n{free}"));
    eprintln!("guest_mem_used_mib_idle: {used}");

    // Two users' desktops, each in its own cgroup with its limits: the appliance defaults
    // (2 CPUs, 4 GiB, 4096 tasks) for the admin's, bob's own limits for his.
    let bob = json_ok(
        lhttp,
        "POST",
        "/api/v1/users",
        Some(&token),
        Some(&json!({"username": "bob", "password": "bob-password"})),
    );
    let bob_id = bob["id"].as_str().expect("bob's id");
    json_ok(
        lhttp,
        "PATCH",
        &format!("/api/v1/users/{bob_id}"),
        Some(&token),
        Some(&json!({"limits": {"cpus": 1, "memory_mib": 1024, "pids": 512}})),
    );
    let bob_token = login_as(lhttp, "bob", "bob-password");
    create_session(lhttp, &bob_token, "bob's");
    let desktops = json_ok(lhttp, "GET", "/api/v1/desktops", Some(&token), None);
    let owned: Vec<&Value> = desktops
        .as_array()
        .expect("desktop list")
        .iter()
        .filter(|d| !d["owner"].is_null())
        .collect();
    assert_eq!(owned.len(), 2, "two users' desktops: {desktops}");
    for d in owned {
        let cg = d["cgroup"]
            .as_str()
            .unwrap_or_else(|| panic!("no cgroup in the VM: {d}"));
        let want = if d["owner"] == bob_id {
            "100000 100000\n1073741824\n512\n"
        } else {
            "200000 100000\n4294967296\n4096\n"
        };
        let got = run(ssh_base(&key, ssh_port).args([
            "root@127.0.0.1",
            &format!("cat '{cg}/cpu.max' '{cg}/memory.max' '{cg}/pids.max'"),
        ]));
        assert_eq!(got, want, "limits of desktop {} in {cg}", d["n"]);
        assert!(d["tasks"].as_u64().unwrap_or(0) > 0, "{d}");
    }

    let v = json_ok(lhttp, "POST", "/api/v1/admin/shutdown", Some(&token), None);
    assert_eq!(v["accepted"], json!(true), "{v}");
    let st = vm.wait_poweroff(POWEROFF_TIMEOUT);
    assert!(st.success(), "QEMU exit status after admin shutdown: {st}");
}

/// Builds a signed update bundle with `scripts/update-bundle.sh` (the image's development key);
/// `zigral` replaces the binary (a broken one for the rollback). Returns the bundle's path.
fn update_bundle(dir: &TempDir, version: &str, zigral: Option<&Path>) -> PathBuf {
    let out = dir.path(&format!("bundle-{version}"));
    let mut cmd = Command::new(repo_root().join("scripts/update-bundle.sh"));
    cmd.arg("--out")
        .arg(&out)
        .args(["--version", version, "--serial", "1"]);
    cmd.arg("--zigral").arg(
        zigral
            .map(Path::to_path_buf)
            .unwrap_or_else(|| bin("zigral")),
    );
    eprintln!("{}", run(&mut cmd));
    out.join(format!("zigral-{version}-1.tar.zst"))
}

/// `POST /api/v1/admin/update` (multipart, as a person would with curl): status and body.
fn upload_update(port: u16, token: &str, bundle: &Path, signature: &Path) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg("-F")
        .arg(format!("bundle=@{}", bundle.display()))
        .arg("-F")
        .arg(format!("signature=@{}", signature.display()))
        .arg(format!("http://127.0.0.1:{port}/api/v1/admin/update"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

/// Waits until `GET /api/v1/admin/update` reports update `id` finished (the control plane is
/// down for part of it); returns the status.
fn await_update(vm: &mut Vm, token: &str, id: &str) -> Value {
    let port = vm.http;
    vm.wait(
        Duration::from_secs(400),
        &format!("update {id} to finish"),
        || {
            let (st, body) = http(port, "GET", "/api/v1/admin/update", Some(token), None).ok()?;
            let v: Value = serde_json::from_str(&body).ok()?;
            let u = &v["update"];
            (st == 200
                && u["id"] == id
                && ["committed", "rolled_back", "failed"].contains(&u["phase"].as_str()?))
            .then(|| u.clone())
        },
    )
}

fn running_version(port: u16) -> String {
    let info = json_ok(port, "GET", "/api/v1/info", None, None);
    info["release"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Power cuts and signed updates, on one disk over two boots, while a writer appends messages
/// the whole time: a bundle with a bad signature is refused; a good one is applied and its
/// version answers; a broken one (its control plane never becomes ready) rolls back by itself;
/// QEMU is killed (SIGKILL) while another broken update holds its health gate; the next boot
/// comes back on the working slot, says the update was interrupted, and has every message the
/// API acknowledged before, during and after the updates.
#[test]
#[ignore = "boots the VM image under QEMU for minutes: run by scripts/test.sh (make test) with --ignored"]
fn power_cut_keeps_acknowledged_messages() {
    require_tools(VM_TOOLS);
    require_tools(&["minisign", "zstd", "curl"]);
    let _g = vm_lock();
    let image = image();
    let dir = TempDir::new("cut");
    let good = update_bundle(&dir, "0.2.0", None);
    let broken_bin = dir.path("broken-zigral");
    std::fs::write(&broken_bin, "#!/bin/sh\nexec sleep 100000\n").expect("write");
    std::fs::set_permissions(
        &broken_bin,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let broken = update_bundle(&dir, "0.3.0", Some(&broken_bin));
    let sig = |b: &Path| PathBuf::from(format!("{}.minisig", b.display()));
    let tampered = dir.path("tampered.tar.zst");
    let mut bytes = std::fs::read(&good).expect("bundle");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&tampered, bytes).expect("write");

    let pw_file = dir.path("admin-password");
    let password = "power-cut-secret-42";
    std::fs::write(&pw_file, password).expect("write password");
    let overlay = dir.path("disk.qcow2");
    let opts = VmOpts {
        image: &image,
        overlay: &overlay,
        ssh_key: None,
        admin_password_file: Some(&pw_file),
        disk_boot: false,
    };
    let mut vm = Vm::boot(&opts, &dir, "cut1");
    let ready_s = vm.wait_ready(vm.http);
    eprintln!("boot_direct_kernel_to_control_ready_s: {ready_s:.1}");
    let token = login(vm.http, password);
    let session = create_session(vm.http, &token, "power cut");
    let image_version = running_version(vm.http);

    // Writer thread: sequential appends, recording each acknowledged one. During an update
    // the control plane is restarting (connection refused) or refuses writes (503): those
    // are not acknowledged and the writer goes on.
    let acked = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (acked, stop, token, session, port) = (
            acked.clone(),
            stop.clone(),
            token.clone(),
            session.clone(),
            vm.http,
        );
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = format!("message {i} of the writer");
                match post_message(port, &token, &session, &text) {
                    Ok(201) => acked.lock().unwrap_or_else(|e| e.into_inner()).push(text),
                    Ok(_) | Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
                i += 1;
            }
        })
    };
    let acked_now = || acked.lock().unwrap_or_else(|e| e.into_inner()).len();
    wait_for(Duration::from_secs(300), "20 acknowledged writes", || {
        (acked_now() >= 20).then_some(())
    });

    // A tampered bundle: refused at once, nothing changed.
    let (st, body) = upload_update(vm.http, &token, &tampered, &sig(&good));
    assert_eq!(st, 400, "tampered bundle: {body}");
    assert!(body.to_string().contains("does not match"), "{body}");
    assert_eq!(running_version(vm.http), image_version);

    // A good bundle: applied, and version 0.2.0 answers.
    let (st, body) = upload_update(vm.http, &token, &good, &sig(&good));
    assert_eq!(st, 202, "good bundle: {body}");
    let before = acked_now();
    let u = await_update(&mut vm, &token, body["id"].as_str().expect("id"));
    assert_eq!(u["phase"], "committed", "{u}");
    assert_eq!(running_version(vm.http), "0.2.0");
    wait_for(Duration::from_secs(120), "writes after the update", || {
        (acked_now() > before + 5).then_some(())
    });

    // A broken bundle: its gate fails and it rolls back to 0.2.0 by itself.
    let (st, body) = upload_update(vm.http, &token, &broken, &sig(&broken));
    assert_eq!(st, 202, "broken bundle: {body}");
    let t0 = Instant::now();
    let u = await_update(&mut vm, &token, body["id"].as_str().expect("id"));
    eprintln!(
        "rollback of a broken update took {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(u["phase"], "rolled_back", "{u}");
    assert!(
        u["message"]
            .as_str()
            .unwrap_or("")
            .contains("failed its health check"),
        "{u}"
    );
    assert_eq!(running_version(vm.http), "0.2.0");
    let before = acked_now();
    wait_for(
        Duration::from_secs(120),
        "writes after the rollback",
        || (acked_now() > before + 5).then_some(()),
    );

    // Pull the plug while the broken bundle holds its health gate.
    let (st, body) = upload_update(vm.http, &token, &broken, &sig(&broken));
    assert_eq!(st, 202, "broken bundle again: {body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let serial = vm.serial.clone();
    vm.wait(Duration::from_secs(300), "the update's health gate", || {
        vm_serial(&serial)
            .lines()
            .any(|l| l.contains(&format!("zigral-update: {id}: waiting up to")))
            .then_some(())
    });
    vm.qemu.signal(nix::sys::signal::Signal::SIGKILL);
    vm.qemu.wait_timeout(Duration::from_secs(30));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer thread");
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    eprintln!("power cut after {} acknowledged messages", acked.len());

    let mut vm2 = Vm::boot(&opts, &dir, "cut2");
    vm2.wait_ready(vm2.http);
    let serial2 = vm2.serial.clone();
    let timeline = vm2.wait(BOOT_TIMEOUT, "the boot timeline", || {
        vm_serial(&serial2)
            .lines()
            .find(|l| l.contains("boot timeline: kernel "))
            .map(|l| l.trim().to_owned())
    });
    eprintln!("direct kernel boot, {timeline}");
    assert!(
        vm2.serial_text()
            .contains("zigral-update: a restart interrupted the update to 0.3.0"),
        "no rollback line on the console:\n{}",
        vm2.tail()
    );
    let token = login(vm2.http, password);
    assert_eq!(running_version(vm2.http), "0.2.0");
    let u = json_ok(vm2.http, "GET", "/api/v1/admin/update", Some(&token), None);
    assert_eq!(u["update"]["id"], id.as_str(), "{u}");
    assert_eq!(u["update"]["phase"], "rolled_back", "{u}");
    let texts = message_texts(vm2.http, &token, &session);
    for m in &acked {
        assert!(
            texts.contains(m),
            "acknowledged {m:?} lost across the updates and the power cut"
        );
    }
    // Nothing invented: every stored message is one the writer sent, in order.
    for w in texts.windows(2) {
        let n = |s: &str| -> u32 {
            s.split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(u32::MAX)
        };
        assert!(n(&w[0]) < n(&w[1]), "order broken: {w:?}");
    }
    vm2.power_button();
    vm2.wait_poweroff(POWEROFF_TIMEOUT);
}

/// The Packer template is valid for this machine's Packer (1.6.6) and rejects bad input.
#[test]
#[ignore = "needs packer (scripts/install-deps.sh image): run by scripts/test.sh (make test) with --ignored"]
fn packer_template_validates() {
    require_tools(&["packer", "ssh-keygen"]);
    let dir = TempDir::new("packer");
    let key = ssh_keypair(&dir);
    let payload = dir.path("payload");
    std::fs::create_dir_all(&payload).expect("payload dir");
    let validate = |extra: &[String]| {
        let mut c = Command::new("packer");
        c.current_dir(repo_root().join("packer"))
            .arg("validate")
            .arg(format!("-var=ssh_private_key_file={}", key.display()))
            .arg(format!("-var=payload_dir={}", payload.display()))
            .args(extra)
            .arg("zigral.pkr.hcl");
        c.output()
            .expect("run packer (scripts/install-deps.sh image)")
    };
    let ok = validate(&[]);
    assert!(
        ok.status.success(),
        "packer validate failed:\n{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = validate(&["-var=disk_size=lots".to_owned()]);
    assert!(
        !bad.status.success(),
        "packer validate must reject disk_size=lots"
    );
    let fmt = Command::new("packer")
        .current_dir(repo_root().join("packer"))
        .args(["fmt", "-check", "zigral.pkr.hcl"])
        .output()
        .expect("packer fmt");
    assert!(
        fmt.status.success(),
        "packer/zigral.pkr.hcl is not `packer fmt` clean"
    );
}

/// The build script refuses bad input before touching anything.
#[test]
fn build_script_rejects_bad_input() {
    let dir = TempDir::new("badargs");
    let out = dir.path("never.qcow2");
    for args in [
        vec!["--profile", "public"],
        vec!["--compress", "xz"],
        vec!["--disk-size", "huge"],
        vec!["--ssh-key", "/nonexistent.pub"],
        vec!["--frobnicate"],
    ] {
        let o = Command::new(repo_root().join("image/build.sh"))
            .args(&args)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run image/build.sh");
        assert!(!o.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("error:"), "{args:?}: unclear error: {err}");
        assert!(!out.exists(), "{args:?} must not produce an image");
    }
}

/// `packer/build.sh` (Packer boots the recipe image under QEMU TCG, installs the layer over
/// SSH, seals it; a few minutes) produces an image whose first boot is a real first boot (the
/// seal step worked): a fresh admin password on the console, the control plane up, the disk
/// grown to Packer's `disk_size`.
#[test]
#[ignore = "builds with Packer and boots under QEMU for minutes: run by scripts/test.sh (make test) with --ignored"]
fn packer_build_produces_a_bootable_sealed_image() {
    require_tools(&["packer", "qemu-system-x86_64", "qemu-img", "ssh-keygen"]);
    let _g = vm_lock();
    let _ = image();
    let bin_dir = bin("zigral").parent().expect("bin dir").to_owned();
    run(Command::new(repo_root().join("packer/build.sh"))
        .env("ZIGRAL_BIN_DIR", &bin_dir)
        .args(["--disk-size", "6G"]));
    let built = repo_root().join("packer/build/zigral.qcow2");
    let dir = TempDir::new("packer-boot");
    let overlay = dir.path("disk.qcow2");
    let mut vm = Vm::boot(
        &VmOpts {
            image: &built,
            overlay: &overlay,
            ssh_key: None,
            admin_password_file: None,
            disk_boot: false,
        },
        &dir,
        "packer",
    );
    let password = admin_password_from_serial(&mut vm);
    vm.wait_ready(vm.http);
    let token = login(vm.http, &password);
    create_session(vm.http, &token, "packer image");
    let info = run(Command::new("qemu-img").arg("info").arg(&built));
    assert!(info.contains("virtual size: 6 GiB"), "{info}");
    vm.power_button();
    let st = vm.wait_poweroff(POWEROFF_TIMEOUT);
    assert!(st.success(), "QEMU exit status: {st}");
}

/// The VM's service file is valid for this build's zigral-init (schema drift shows up here,
/// not as a VM that boots into "nothing started"), in both profiles.
#[test]
fn vm_init_config_is_valid() {
    let cfg = repo_root().join("image/init.toml");
    for bind in ["0.0.0.0", "127.0.0.1"] {
        let out = Command::new(bin("zigral-init"))
            .env("ZIGRAL_BIND", bind)
            .arg("check")
            .arg("--config")
            .arg(&cfg)
            .output()
            .expect("run zigral-init check");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "image/init.toml (bind {bind}):\n{text}"
        );
        for svc in [
            "dhcp",
            "sshd",
            "proxy",
            "control",
            "xvfb@0",
            "x11vnc@0",
            "chromium@0",
        ] {
            assert!(
                text.contains(svc),
                "{svc} missing from image/init.toml:\n{text}"
            );
        }
    }
}

/// `n` random bytes from the kernel.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("read /dev/urandom");
    b
}

/// base64url without padding (RFC 4648 §5), the fleet keys' encoding.
fn base64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=c.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A minimal ISO 9660 image labelled `label` with `files` (sorted, names without a version)
/// in its root directory, as KubeVirt's cloudInitNoCloud attaches its `cidata` disk. No Rock
/// Ridge or Joliet: Linux shows `META-DATA.;1` as `meta-data`.
fn iso9660(label: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    const S: usize = 2048;
    fn both32(v: u32) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&v.to_le_bytes());
        b[4..].copy_from_slice(&v.to_be_bytes());
        b
    }
    fn both16(v: u16) -> [u8; 4] {
        let mut b = [0u8; 4];
        b[..2].copy_from_slice(&v.to_le_bytes());
        b[2..].copy_from_slice(&v.to_be_bytes());
        b
    }
    fn record(name: &[u8], extent: u32, len: u32, dir: bool) -> Vec<u8> {
        let mut r = vec![0u8; 33];
        r[2..10].copy_from_slice(&both32(extent));
        r[10..18].copy_from_slice(&both32(len));
        r[18..25].copy_from_slice(&[126, 1, 1, 0, 0, 0, 0]);
        r[25] = if dir { 2 } else { 0 };
        r[28..32].copy_from_slice(&both16(1));
        r[32] = u8::try_from(name.len()).expect("short name");
        r.extend_from_slice(name);
        if r.len() % 2 == 1 {
            r.push(0);
        }
        r[0] = u8::try_from(r.len()).expect("short record");
        r
    }
    // Sectors: 0-15 system area, 16 primary volume descriptor, 17 terminator, 18/19 path
    // tables (little/big endian), 20 the root directory, then the files.
    const ROOT: u32 = 20;
    let mut extents = Vec::new();
    let mut next = ROOT + 1;
    for (_, data) in files {
        extents.push(next);
        next += u32::try_from(data.len().div_ceil(S).max(1)).expect("small file");
    }
    let mut img = vec![0u8; next as usize * S];
    let sector = S as u32;
    let p = &mut img[16 * S..17 * S];
    p[0] = 1;
    p[1..6].copy_from_slice(b"CD001");
    p[6] = 1;
    p[8..72].fill(b' ');
    p[40..40 + label.len()].copy_from_slice(label.as_bytes());
    p[80..88].copy_from_slice(&both32(next));
    p[120..124].copy_from_slice(&both16(1));
    p[124..128].copy_from_slice(&both16(1));
    p[128..132].copy_from_slice(&both16(2048));
    p[132..140].copy_from_slice(&both32(10));
    p[140..144].copy_from_slice(&18u32.to_le_bytes());
    p[148..152].copy_from_slice(&19u32.to_be_bytes());
    p[156..190].copy_from_slice(&record(&[0], ROOT, sector, true));
    p[190..813].fill(b' ');
    for d in [813, 830, 847, 864] {
        p[d..d + 16].fill(b'0');
    }
    p[881] = 1;
    let t = &mut img[17 * S..18 * S];
    t[0] = 255;
    t[1..6].copy_from_slice(b"CD001");
    t[6] = 1;
    // Path tables: the root directory only (name length 1, extent, parent 1, name 0, pad).
    img[18 * S..18 * S + 10].copy_from_slice(&[1, 0, ROOT as u8, 0, 0, 0, 1, 0, 0, 0]);
    img[19 * S..19 * S + 10].copy_from_slice(&[1, 0, 0, 0, 0, ROOT as u8, 0, 1, 0, 0]);
    let mut dir = record(&[0], ROOT, sector, true);
    dir.extend(record(&[1], ROOT, sector, true));
    for ((name, data), &ext) in files.iter().zip(&extents) {
        let id = format!("{}.;1", name.to_ascii_uppercase());
        let len = u32::try_from(data.len()).expect("small file");
        dir.extend(record(id.as_bytes(), ext, len, false));
        let at = ext as usize * S;
        img[at..at + data.len()].copy_from_slice(data);
    }
    assert!(dir.len() <= S, "the root directory fits one sector");
    let at = ROOT as usize * S;
    img[at..at + dir.len()].copy_from_slice(&dir);
    img
}

/// One line from HAProxy's agent-check port (connect, read up to the newline), or None when
/// nothing answers yet (QEMU's user network accepts on the host port and closes when the
/// guest does not).
fn agent_line(port: u16) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 64 {
        match s.read(&mut b) {
            Ok(1) if b[0] == b'\n' => {
                return Some(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
            Ok(1) => line.push(b[0]),
            _ => return None,
        }
    }
    None
}

/// Fleet provisioning as the engines do it (deploy/README.md): Nomad's QEMU fw_cfg entries
/// (`opt/zigral/appliance_name`, `opt/zigral/user-data`) together with KubeVirt's NoCloud seed
/// (an ISO 9660 `cidata` disk: JSON meta-data with `local-hostname`, a user-data of its own).
/// The name from fw_cfg wins over meta-data, fw_cfg's user-data over the seed's; the admin
/// password from user-data logs in; `/api/v1/info` shows the name and the 8 fleet members;
/// the capacity agent answers `N%` through a forwarded port; settings the appliance does not
/// take are named on the console, and no secret value reaches the console or the service logs.
#[test]
#[ignore = "boots the VM image under QEMU for minutes: run by scripts/test.sh (make test) with --ignored"]
fn fleet_settings_from_fw_cfg_and_nocloud_seed() {
    require_tools(VM_TOOLS);
    let _g = vm_lock();
    let image = image();
    let dir = TempDir::new("fleet");
    let key = ssh_keypair(&dir);
    let password = format!("pw-{}", base64url(&random_bytes(18)));
    let fleet_secret = base64url(&random_bytes(32));
    assert_eq!(fleet_secret.len(), 43);
    // A fleet user, made as an operator would (`zigral fleet user`, password on stdin).
    let ada_pw = format!("ada-{}", base64url(&random_bytes(12)));
    let ada = {
        let mut c = Command::new(zigral_tests::bin("zigral"))
            .args(["fleet", "user", "ada", "--role", "user"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("zigral fleet user");
        c.stdin
            .take()
            .expect("stdin")
            .write_all(format!("{ada_pw}\n").as_bytes())
            .expect("password to zigral fleet user");
        let o = c.wait_with_output().expect("zigral fleet user");
        assert!(o.status.success(), "zigral fleet user failed");
        String::from_utf8(o.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned()
    };
    let user_data = dir.path("user-data");
    std::fs::write(
        &user_data,
        format!(
            "# fleet settings (Nomad: fw_cfg opt/zigral/user-data)\n\
             ZIGRAL_ADMIN_PASSWORD={password}\n\
             ZIGRAL_FLEET_MEMBERS=zigral-{{0..7}}\n\
             \n\
             ZIGRAL_FLEET_KEYS=k1:{fleet_secret}\n\
             ZIGRAL_FLEET_USERS={ada}\n\
             ZIGRAL_NOT_ALLOWED=x\n"
        ),
    )
    .expect("write user-data");
    let seed = dir.path("seed.iso");
    std::fs::write(
        &seed,
        iso9660(
            "cidata",
            &[
                (
                    "meta-data",
                    br#"{"instance-id":"5d1f9a0e-zigral-test","local-hostname":"zigral-3"}"#,
                ),
                (
                    "user-data",
                    b"ZIGRAL_FLEET_MEMBERS=zigral-{0..3}\nZIGRAL_SEED_ONLY=1\n",
                ),
            ],
        ),
    )
    .expect("write the NoCloud seed");

    let (http_port, proxy, ssh, agent) = (free_port(), free_port(), free_port(), free_port());
    let serial = dir.path("fleet-serial.log");
    let monitor = dir.path("fleet-monitor.sock");
    let mut cmd = Command::new(repo_root().join("image/boot.sh"));
    cmd.arg("--image")
        .arg(&image)
        .arg("--overlay")
        .arg(dir.path("disk.qcow2"))
        .args(["--accel", "tcg"])
        .args(["--http-port", &http_port.to_string()])
        .args(["--proxy-port", &proxy.to_string()])
        .args(["--ssh-port", &ssh.to_string()])
        .args(["--agent-port", &agent.to_string()])
        .args(["--appliance-name", "zigral-7"])
        .arg("--user-data")
        .arg(&user_data)
        .arg("--seed")
        .arg(&seed)
        .arg("--ssh-key")
        .arg(key.with_extension("pub"))
        .arg("--serial-log")
        .arg(&serial)
        .arg("--monitor")
        .arg(&monitor)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut vm = Vm {
        qemu: Proc::spawn(cmd),
        serial,
        monitor,
        http: http_port,
        proxy,
        ssh,
        started: Instant::now(),
    };
    let ready_s = vm.wait_ready(vm.http);
    eprintln!("fleet_boot_to_control_ready_s: {ready_s:.1}");

    // The admin password from user-data (nothing generated, nothing printed).
    let token = login(vm.http, &password);
    assert!(!token.is_empty());
    assert!(
        !vm.serial_text().contains("admin password (user 'admin')"),
        "a password from user-data must not be generated or printed"
    );

    // The fleet user (read from /run/zigral/fleet-users) gets a fleet token.
    let ada_token = zigral_tests::api::login_as(vm.http, "ada", &ada_pw);
    assert!(
        ada_token.starts_with("zgf_k1."),
        "ada's login: {ada_token:.12}…"
    );

    // The name from fw_cfg (not meta-data's zigral-3); the members from fw_cfg's user-data
    // (not the seed's zigral-{0..3}).
    let info = json_ok(vm.http, "GET", "/api/v1/info", None, None);
    let appliance = &info["appliance"];
    assert_eq!(appliance["name"], "zigral-7", "/api/v1/info: {info}");
    let members: Vec<&str> = appliance["fleet"]["members"]
        .as_array()
        .unwrap_or_else(|| panic!("appliance.fleet.members in /api/v1/info: {info}"))
        .iter()
        .map(|m| m.as_str().expect("member name"))
        .collect();
    let want: Vec<String> = (0..8).map(|i| format!("zigral-{i}")).collect();
    assert_eq!(members, want, "/api/v1/info: {info}");

    // HAProxy's agent-check through the forwarded port: one line, the free desktop share.
    let line = vm.wait(
        Duration::from_secs(120),
        "the capacity agent's line on the forwarded port",
        || agent_line(agent),
    );
    let pct = line.strip_suffix('%').and_then(|n| n.parse::<u8>().ok());
    assert!(
        pct.is_some_and(|p| p <= 100),
        "agent answer {line:?}, want N%"
    );

    // The console reports by name: the seed was read (its meta-data and its own user-data),
    // the settings that are not taken, the name's source.
    let console = vm.serial_text();
    for needle in [
        "NoCloud seed /dev/vdb",
        "local-hostname zigral-3",
        "ZIGRAL_NOT_ALLOWED is not a setting",
        "ZIGRAL_SEED_ONLY is not a setting",
        "appliance name zigral-7 (from fw_cfg opt/zigral/appliance_name)",
        "fleet settings for the control plane: ZIGRAL_APPLIANCE_NAME ZIGRAL_FLEET_KEYS ZIGRAL_FLEET_USERS ZIGRAL_FLEET_MEMBERS",
    ] {
        assert!(
            console.contains(needle),
            "no {needle:?} on the console:\n{}",
            vm.tail()
        );
    }
    for (what, secret) in [
        ("the admin password", password.as_str()),
        ("the fleet key's secret", fleet_secret.as_str()),
        ("the fleet user's password", ada_pw.as_str()),
    ] {
        assert!(
            !console.contains(secret),
            "{what} appears on the serial console"
        );
    }

    // Inside the VM (root over SSH): the host name, the settings file root's own and private,
    // the seed unmounted, and no secret in any service log. The secrets go in on stdin.
    let check = "hostname; stat -c '%a %U' /run/zigral/fleet.env; \
                 stat -c '%a %U %G' /run/zigral/fleet-users; \
                 test -s /var/lib/zigral/logs/control.log && echo control-log; \
                 grep -q ' /run/zigral/seed' /proc/mounts && echo seed-mounted; \
                 grep -rlF -f - /var/lib/zigral/logs && echo secret-in-logs; echo checked";
    let ssh_port = vm.ssh;
    let out = vm.wait(BOOT_TIMEOUT, "a shell over SSH", || {
        let mut c = ssh_base(&key, ssh_port);
        c.args(["root@127.0.0.1", check])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().ok()?;
        child
            .stdin
            .take()?
            .write_all(format!("{password}\n{fleet_secret}\n{ada_pw}\n").as_bytes())
            .ok()?;
        let o = child.wait_with_output().ok()?;
        // 255: ssh itself failed (sshd not up yet); anything else is the commands' answer.
        (o.status.code() != Some(255)).then(|| {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        })
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "zigral-7",
            "600 root",
            "640 root zigral",
            "control-log",
            "checked"
        ],
        "in the VM: host name, /run/zigral/fleet.env, the users file (the control plane's \
         group reads it), control log, no seed mount, no secret in logs"
    );

    vm.power_button();
    let st = vm.wait_poweroff(POWEROFF_TIMEOUT);
    assert!(st.success(), "QEMU exit status after power-off: {st}");
}
