//! /proc readers: a process's parent and kernel-thread flag, the children of a process,
//! every process in the namespace (for the last sweep at shutdown), the memory, CPU time
//! and count of a set of processes with their descendants (usage without cgroups), and the
//! members of a process group that still run (for `pause`).

use std::collections::{BTreeSet, HashMap};

/// (ppid, is_kernel_thread) of `pid` from /proc/<pid>/stat.
fn stat_info(pid: i32) -> Option<(i32, bool)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    let mut f = after.split_whitespace();
    let ppid = f.nth(1)?.parse().ok()?;
    let flags: u64 = f.nth(4)?.parse().ok()?;
    Some((ppid, flags & 0x0020_0000 != 0))
}

fn stat_ppid(pid: i32) -> Option<i32> {
    stat_info(pid).map(|(p, _)| p)
}

/// PIDs whose parent is `ppid`.
pub fn children_of(ppid: i32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| stat_ppid(*p) == Some(ppid))
        .collect()
}

/// Every PID except our own (PID 1 mode: everything in the namespace is ours).
pub(super) fn all_pids() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| *p != me && stat_info(*p).is_some_and(|(_, kthread)| !kthread))
        .collect()
}

/// (state, pgrp) from a /proc/<pid>/stat line.
fn state_pgrp(s: &str) -> Option<(char, i32)> {
    let mut f = s.rsplit_once(')')?.1.split_whitespace();
    let state = f.next()?.chars().next()?;
    let pgrp = f.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// True for a task that runs no code: stopped (`T`), traced-stopped (`t`), a zombie or dead.
fn halted(state: char) -> bool {
    matches!(state, 'T' | 't' | 'Z' | 'X' | 'x')
}

/// True when the task whose /proc directory is `task` has SIGSTOP pending (its own or its
/// process's pending set, from `status`).
fn stop_pending(task: &std::path::Path) -> bool {
    const SIGSTOP_BIT: u64 = 1 << (libc::SIGSTOP - 1);
    let Ok(s) = std::fs::read_to_string(task.join("status")) else {
        return false;
    };
    s.lines()
        .filter_map(|l| {
            l.strip_prefix("SigPnd:")
                .or_else(|| l.strip_prefix("ShdPnd:"))
        })
        .filter_map(|v| u64::from_str_radix(v.trim(), 16).ok())
        .any(|m| m & SIGSTOP_BIT != 0)
}

/// True while the task in `/proc/.../<tid>` may still run user code after a SIGSTOP: it is not
/// stopped, a zombie or dead, nor in an uninterruptible kernel wait (`D`) with the SIGSTOP
/// still pending (it stops before it returns to user space: a shell waiting in vfork for a
/// child that is itself stopped stays there until the child goes).
fn task_running(task: &std::path::Path) -> Option<bool> {
    let s = std::fs::read_to_string(task.join("stat")).ok()?;
    let (st, _) = state_pgrp(&s)?;
    let will_stop = st == 'D' && stop_pending(task);
    Some(!(halted(st) || will_stop))
}

/// True while some thread of process `pid` may still run user code (see `task_running`; a
/// process that is gone, or a zombie, does not).
pub(super) fn still_running(pid: i32) -> bool {
    let dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    if let Ok(rd) = std::fs::read_dir(dir.join("task")) {
        let mut any = false;
        for e in rd.flatten() {
            any = true;
            // A thread that exited meanwhile does not run.
            if task_running(&e.path()) == Some(true) {
                return true;
            }
        }
        if any {
            return false;
        }
    }
    task_running(&dir) == Some(true)
}

/// The processes of process group `pgid` (and `pgid` itself) with a thread that may still run
/// user code (one pass over /proc).
pub(super) fn group_running(pgid: i32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, pgrp) = state_pgrp(&s)?;
        (pgrp == pgid || pid == pgid).then_some(pid)
    })
    .filter(|p| still_running(*p))
    .collect()
}

/// One process as its /proc/<pid>/stat says.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProcStat {
    pub(super) pid: i32,
    pub(super) ppid: i32,
    /// Session id (a service's processes share its main process's session).
    pub(super) sid: i32,
    /// utime + stime, clock ticks.
    pub(super) ticks: u64,
    /// Resident set, pages.
    pub(super) rss_pages: u64,
}

fn parse_stat(pid: i32, s: &str) -> Option<ProcStat> {
    let after = s.rsplit_once(')')?.1;
    // Fields from the 3rd (state) on: state ppid pgrp session tty tpgid flags minflt cminflt
    // majflt cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime
    // vsize rss ...
    let f: Vec<&str> = after.split_whitespace().collect();
    let num = |i: usize| f.get(i)?.parse::<i64>().ok();
    Some(ProcStat {
        pid,
        ppid: num(1)? as i32,
        sid: num(3)? as i32,
        ticks: (num(11)?.max(0) + num(12)?.max(0)) as u64,
        rss_pages: num(21)?.max(0) as u64,
    })
}

/// Every process's stat line (one pass over /proc).
pub(super) fn proc_table() -> Vec<ProcStat> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(pid, &s)
    })
    .collect()
}

/// Memory, CPU time and number of the processes in `roots`, their descendants and the other
/// members of their sessions: (RSS bytes, utime + stime in microseconds, processes).
pub(super) fn tree_usage(table: &[ProcStat], roots: &[i32]) -> (u64, u64, u64) {
    let mut children: HashMap<i32, Vec<usize>> = HashMap::new();
    for (i, p) in table.iter().enumerate() {
        children.entry(p.ppid).or_default().push(i);
    }
    let sessions: BTreeSet<i32> = roots.iter().copied().collect();
    let mut seen: BTreeSet<usize> = BTreeSet::new();
    let mut stack: Vec<usize> = table
        .iter()
        .enumerate()
        .filter(|(_, p)| sessions.contains(&p.pid) || sessions.contains(&p.sid))
        .map(|(i, _)| i)
        .collect();
    while let Some(i) = stack.pop() {
        if !seen.insert(i) {
            continue;
        }
        if let Some(kids) = children.get(&table[i].pid) {
            stack.extend(kids.iter().copied());
        }
    }
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|h| *h > 0)
        .unwrap_or(100) as u64;
    let (mut rss, mut ticks) = (0u64, 0u64);
    for &i in &seen {
        rss += table[i].rss_pages * page;
        ticks += table[i].ticks;
    }
    (rss, ticks * 1_000_000 / hz, seen.len() as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stat_lines_and_trees() {
        let line = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 1000 25 18446744073709551615";
        let p = parse_stat(42, line).unwrap();
        assert_eq!(
            (p.pid, p.ppid, p.sid, p.ticks, p.rss_pages),
            (42, 1, 42, 10, 25)
        );
        let mk = |pid, ppid, sid| ProcStat {
            pid,
            ppid,
            sid,
            ticks: 100,
            rss_pages: 1,
        };
        // 10 is a service; 11 its child, 12 a grandchild, 13 re-parented to the supervisor
        // (1) but still in session 10; 20 is someone else.
        let table = [
            mk(10, 1, 10),
            mk(11, 10, 10),
            mk(12, 11, 12),
            mk(13, 1, 10),
            mk(20, 1, 20),
        ];
        let (rss, usec, n) = tree_usage(&table, &[10]);
        assert_eq!(n, 4);
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .unwrap()
            .unwrap() as u64;
        assert_eq!(rss, 4 * page);
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap() as u64;
        assert_eq!(usec, 400 * 1_000_000 / hz);
        assert_eq!(tree_usage(&table, &[]).2, 0);
        // Our own process is found in the real /proc.
        let me = std::process::id() as i32;
        assert!(proc_table().iter().any(|p| p.pid == me));
    }

    #[test]
    fn stopped_processes_are_told_from_running_ones() {
        let line = "7 (sh (x)) T 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 1000 25";
        assert_eq!(state_pgrp(line), Some(('T', 42)));
        assert!(halted('T') && halted('t') && halted('Z'));
        assert!(!halted('R') && !halted('S') && !halted('D'));
        // This test process runs (its own thread at least); a pid that does not exist does not.
        let me = std::process::id() as i32;
        assert!(still_running(me));
        assert!(!still_running(i32::MAX));
        // A stopped child does not run; after SIGCONT it does.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        let t0 = std::time::Instant::now();
        while still_running(pid.as_raw()) {
            assert!(t0.elapsed().as_secs() < 10, "SIGSTOP did not stop sleep");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
        let t0 = std::time::Instant::now();
        while !still_running(pid.as_raw()) {
            assert!(t0.elapsed().as_secs() < 10, "SIGCONT did not resume sleep");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
