//! PID 1 duties: early mounts, hostname, loopback, the ACPI power button, and the final
//! sync + reboot(2) (power off, restart or halt). Never exits.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use nix::mount::{MsFlags, mount};

use crate::control::Action;

/// Mount points of the current mount namespace.
fn mountpoints() -> Vec<String> {
    let Ok(s) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    s.lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect()
}

fn mount_one(src: &str, target: &str, fstype: &str, flags: MsFlags, data: &str) {
    if mountpoints().iter().any(|m| m == target) {
        tracing::debug!("{target} already mounted");
        return;
    }
    if !Path::new(target).exists() && std::fs::create_dir_all(target).is_err() {
        tracing::warn!("cannot create {target}");
        return;
    }
    match mount(Some(src), target, Some(fstype), flags, Some(data)) {
        Ok(()) => tracing::info!("mounted {fstype} on {target}"),
        Err(e) => tracing::warn!("mount {fstype} on {target}: {e}"),
    }
}

/// Mounts /proc, /sys, /dev, /dev/pts, /dev/shm, /run, /tmp (and cgroup2) when missing.
pub fn mount_early() {
    let nse = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let ns = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    // /proc first: the "already mounted" check reads /proc/self/mountinfo.
    if !Path::new("/proc/self/mountinfo").exists() {
        let _ = std::fs::create_dir_all("/proc");
        match mount(Some("proc"), "/proc", Some("proc"), nse, None::<&str>) {
            Ok(()) => tracing::info!("mounted proc on /proc"),
            Err(e) => tracing::warn!("mount proc on /proc: {e}"),
        }
    }
    mount_one("sysfs", "/sys", "sysfs", nse, "");
    mount_one(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        "mode=0755",
    );
    mount_one(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        "gid=5,mode=0620,ptmxmode=0666",
    );
    mount_one("tmpfs", "/dev/shm", "tmpfs", ns, "mode=1777");
    mount_one("tmpfs", "/run", "tmpfs", ns, "mode=0755");
    mount_one("tmpfs", "/tmp", "tmpfs", ns, "mode=1777");
    if Path::new("/sys/fs/cgroup").is_dir() {
        mount_one("cgroup2", "/sys/fs/cgroup", "cgroup2", nse, "");
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        if std::fs::symlink_metadata(link).is_err() {
            let _ = std::os::unix::fs::symlink(target, link);
        }
    }
}

/// Sets the hostname.
pub fn set_hostname(name: &str) {
    match nix::unistd::sethostname(name) {
        Ok(()) => tracing::info!("hostname {name}"),
        Err(e) => tracing::warn!("sethostname {name}: {e}"),
    }
}

/// Brings the loopback interface up (the kernel then assigns 127.0.0.1/8 and ::1).
pub fn loopback_up() {
    // SAFETY: plain socket(2) call; the returned fd is checked and closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        tracing::warn!("loopback: socket: {}", std::io::Error::last_os_error());
        return;
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: fd is a valid socket and ifr a properly initialised ifreq naming "lo"; the
    // flags member of the union is the one SIOCGIFFLAGS/SIOCSIFFLAGS read and write.
    let res = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: fd was returned by socket() above and is closed exactly once.
    unsafe { libc::close(fd) };
    match res {
        Ok(()) => tracing::info!("loopback up"),
        Err(e) => tracing::warn!("loopback: {e}"),
    }
}

/// Opens the input device named "Power Button" (ACPI), if any.
pub fn open_power_button() -> Option<File> {
    let rd = std::fs::read_dir("/sys/class/input").ok()?;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("event") {
            continue;
        }
        let label = std::fs::read_to_string(e.path().join("device/name")).unwrap_or_default();
        if label.trim() == "Power Button" {
            let dev = format!("/dev/input/{name}");
            match File::open(&dev) {
                Ok(f) => {
                    tracing::info!("watching {dev} (Power Button)");
                    return Some(f);
                }
                Err(err) => tracing::warn!("open {dev}: {err}"),
            }
        }
    }
    tracing::info!("no ACPI power button found (is the `button` module loaded?)");
    None
}

/// True when a 24-byte `struct input_event` (x86_64) is EV_KEY KEY_POWER pressed.
pub fn is_power_key_press(ev: &[u8]) -> bool {
    if ev.len() < 24 {
        return false;
    }
    let ty = u16::from_ne_bytes([ev[16], ev[17]]);
    let code = u16::from_ne_bytes([ev[18], ev[19]]);
    let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
    ty == 1 && code == 116 && value == 1
}

/// Syncs and powers off / reboots / halts. Never returns; if reboot(2) fails, keeps reaping.
pub fn finish(action: Action) -> ! {
    // Services are already stopped in order; end whatever else is left (stray processes
    // outside any service), then make the root filesystem clean so the next boot needs no
    // journal replay.
    end_all_processes();
    nix::unistd::sync();
    if in_initial_pid_namespace() {
        // Only the machine's real init may remount `/`: in a PID namespace (tests) `/` is the
        // host's root filesystem.
        if let Err(e) = nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
            None::<&str>,
        ) {
            tracing::warn!("remounting / read-only failed: {e}");
        }
    }
    let mode = match action {
        Action::Poweroff => nix::sys::reboot::RebootMode::RB_POWER_OFF,
        Action::Reboot => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
        Action::Halt => nix::sys::reboot::RebootMode::RB_HALT_SYSTEM,
    };
    tracing::info!("{}", action.as_str());
    let err = match nix::sys::reboot::reboot(mode) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    tracing::error!("reboot(2) failed: {err}; halting here");
    loop {
        match nix::sys::wait::wait() {
            Ok(_) => {}
            Err(_) => {
                let mut b = [0u8; 1];
                let _ = std::io::stdin().read(&mut b);
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    }
}

/// SIGTERM to every process but us, a short wait while reaping, then SIGKILL.
fn end_all_processes() {
    use nix::sys::signal::{Signal, kill};
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let minus_one = nix::unistd::Pid::from_raw(-1);
    if kill(minus_one, Signal::SIGTERM).is_err() {
        return; // ESRCH: nobody left
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        match waitpid(minus_one, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Ok(_) => {}
            Err(_) => return, // ECHILD: all gone
        }
    }
    let _ = kill(minus_one, Signal::SIGKILL);
    while waitpid(minus_one, None).is_ok() {}
}

/// True when this process lives in the kernel's initial PID namespace (a real boot, not a
/// container or test namespace): its inode is the fixed PROC_PID_INIT_INO.
fn in_initial_pid_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
    std::fs::metadata("/proc/self/ns/pid").is_ok_and(|m| m.ino() == PROC_PID_INIT_INO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_power_key() {
        let mut ev = [0u8; 24];
        ev[16..18].copy_from_slice(&1u16.to_ne_bytes());
        ev[18..20].copy_from_slice(&116u16.to_ne_bytes());
        ev[20..24].copy_from_slice(&1i32.to_ne_bytes());
        assert!(is_power_key_press(&ev));
        ev[20..24].copy_from_slice(&0i32.to_ne_bytes());
        assert!(!is_power_key_press(&ev));
    }
}
