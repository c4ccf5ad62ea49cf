//! /proc readers: a process's parent and kernel-thread flag, the children of a process, and
//! every process in the namespace (for the last sweep at shutdown).

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
