//! cgroup v2 resource caps: detects a writable cgroup v2 with the cpu and memory controllers
//! (and pids when present), or logs why limits are skipped. Each template instance gets one
//! cgroup `grp-<group>/` (`cpu.max`, `memory.max`, `pids.max`) holding a leaf cgroup per
//! service (cgroup v2 allows processes only in leaves); a global service with its own
//! `limits.cpus`/`limits.memory` gets `svc-<service>/`. Also reads a cgroup's usage.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use zigral_init_protocol::GroupLimits;

/// `cpu.max` period, microseconds.
const CPU_PERIOD: u64 = 100_000;

/// A delegated cgroup v2 subtree in which services get their own cgroups.
#[derive(Debug)]
pub struct Cgroups {
    base: PathBuf,
    /// The pids controller is enabled (`pids.max` is written).
    pids: bool,
}

/// Resource usage of one cgroup, as far as its files tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// `memory.current`, bytes.
    pub memory_bytes: Option<u64>,
    /// `cpu.stat` `usage_usec`.
    pub cpu_usec: Option<u64>,
    /// `pids.current`.
    pub tasks: Option<u64>,
}

fn own_cgroup() -> Option<(PathBuf, PathBuf)> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split_whitespace().next()? == "cgroup2" {
            Some(PathBuf::from(pre.split_whitespace().nth(4)?))
        } else {
            None
        }
    })?;
    let cg = fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some((mount.clone(), mount.join(rel.trim_start_matches('/'))))
}

/// `cpu.max` for `millicpus` thousandths of a CPU (`None`: no limit).
pub fn cpu_max(millicpus: Option<u64>) -> String {
    match millicpus {
        Some(m) => format!("{} {CPU_PERIOD}", m.saturating_mul(CPU_PERIOD / 1000)),
        None => format!("max {CPU_PERIOD}"),
    }
}

fn max_or(v: Option<u64>) -> String {
    v.map_or_else(|| "max".to_string(), |n| n.to_string())
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Cgroups {
    /// Detects a usable cgroup v2 subtree and enables the cpu, memory and (if available) pids
    /// controllers for its children. Returns `None` (with the reason logged) when there is
    /// none; limits are then skipped.
    pub fn detect() -> Option<Cgroups> {
        let Some((mount, mine)) = own_cgroup() else {
            tracing::info!("cgroup v2 not mounted: cgroup limits skipped (rlimits still apply)");
            return None;
        };
        let controllers = fs::read_to_string(mine.join("cgroup.controllers")).unwrap_or_default();
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        if !(has("cpu") && has("memory")) {
            tracing::info!(
                "cgroup v2 at {} lacks the cpu/memory controllers (has: {:?}; a cgroup v1 host \
                 keeps them): cgroup limits skipped (rlimits still apply)",
                mine.display(),
                controllers.trim()
            );
            return None;
        }
        // "No internal processes": outside the root cgroup, move ourselves into a leaf first.
        if mine != mount {
            let leaf = mine.join("zigral-init");
            if let Err(e) = fs::create_dir_all(&leaf)
                .and_then(|_| fs::write(leaf.join("cgroup.procs"), std::process::id().to_string()))
            {
                tracing::info!(
                    "cgroup v2 at {} is not writable ({e}): cgroup limits skipped",
                    mine.display()
                );
                return None;
            }
        }
        if let Err(e) = fs::write(mine.join("cgroup.subtree_control"), "+cpu +memory") {
            tracing::info!(
                "cannot enable cpu/memory controllers in {} ({e}): cgroup limits skipped",
                mine.display()
            );
            return None;
        }
        let pids = if !has("pids") {
            tracing::info!(
                "cgroup v2 at {} has no pids controller: pids limits skipped",
                mine.display()
            );
            false
        } else if let Err(e) = fs::write(mine.join("cgroup.subtree_control"), "+pids") {
            tracing::info!("cannot enable the pids controller ({e}): pids limits skipped");
            false
        } else {
            true
        };
        tracing::info!(
            "cgroup v2 limits enabled under {} (cpu, memory{})",
            mine.display(),
            if pids { ", pids" } else { "" }
        );
        Some(Cgroups { base: mine, pids })
    }

    /// A subtree at `base` whose controllers are already enabled (tests use a plain
    /// directory standing in for cgroupfs).
    pub fn at(base: PathBuf, pids: bool) -> Cgroups {
        Cgroups { base, pids }
    }

    /// The cgroup of template instance `group` (`desktop@3` → `<base>/grp-desktop@3`).
    pub fn group_dir(&self, group: &str) -> PathBuf {
        self.base.join(format!("grp-{group}"))
    }

    fn service_dir(&self, group: Option<&str>, service: &str) -> PathBuf {
        match group {
            Some(g) => self.group_dir(g).join(format!("svc-{service}")),
            None => self.base.join(format!("svc-{service}")),
        }
    }

    /// Creates (or reuses) the cgroup of instance `group`, enables the controllers for its
    /// service leaves and writes `limits`. Returns its directory.
    pub fn create_group(&self, group: &str, limits: &GroupLimits) -> std::io::Result<PathBuf> {
        let dir = self.group_dir(group);
        fs::create_dir_all(&dir)?;
        let ctl = if self.pids {
            "+cpu +memory +pids"
        } else {
            "+cpu +memory"
        };
        fs::write(dir.join("cgroup.subtree_control"), ctl)?;
        self.set_limits(&dir, limits)?;
        Ok(dir)
    }

    /// Writes `cpu.max`, `memory.max` and (with the pids controller) `pids.max` of `dir`
    /// (`None`: no limit). When a write fails, the files already written get their previous
    /// contents back.
    pub fn set_limits(&self, dir: &Path, limits: &GroupLimits) -> std::io::Result<()> {
        let mut files = vec![
            ("cpu.max", cpu_max(limits.millicpus)),
            ("memory.max", max_or(limits.memory)),
        ];
        if self.pids {
            files.push(("pids.max", max_or(limits.pids)));
        }
        let mut done: Vec<(PathBuf, Option<String>)> = Vec::new();
        for (name, value) in files {
            let path = dir.join(name);
            let old = fs::read_to_string(&path).ok();
            if let Err(e) = fs::write(&path, &value) {
                for (p, old) in done.into_iter().rev() {
                    if let Some(old) = old {
                        let _ = fs::write(&p, old.trim());
                    }
                }
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("writing {value:?} to {}: {e}", path.display()),
                ));
            }
            done.push((path, old));
        }
        Ok(())
    }

    /// Creates (or reuses) the cgroup of `service` — a leaf of its instance's cgroup when
    /// `group` is given — with its own caps, and returns its open `cgroup.procs` for the
    /// child to join.
    pub fn prepare(
        &self,
        group: Option<&str>,
        service: &str,
        cpus: Option<f64>,
        memory: Option<u64>,
    ) -> std::io::Result<OwnedFd> {
        let dir = self.service_dir(group, service);
        fs::create_dir_all(&dir)?;
        let cpu = cpu_max(cpus.map(|c| (c * 1000.0).round() as u64));
        for (name, value, set) in [
            ("cpu.max", cpu, cpus.is_some()),
            ("memory.max", max_or(memory), memory.is_some()),
        ] {
            let path = dir.join(name);
            if set {
                fs::write(&path, value)?;
            } else if path.exists() {
                // A reused leaf: drop a cap an earlier run left (best effort).
                let _ = fs::write(&path, value);
            }
        }
        let f = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))?;
        Ok(OwnedFd::from(f))
    }

    /// Removes the cgroup of `service` (once its processes are gone).
    pub fn remove(&self, group: Option<&str>, service: &str) {
        let _ = fs::remove_dir(self.service_dir(group, service));
    }

    /// True while any process is left in `dir` or below (`cgroup.events` `populated 1`).
    pub fn populated(dir: &Path) -> bool {
        fs::read_to_string(dir.join("cgroup.events"))
            .map(|s| s.lines().any(|l| l.trim() == "populated 1"))
            .unwrap_or(false)
    }

    /// SIGKILLs every process in `dir` and below (`cgroup.kill`, Linux 5.14+).
    pub fn kill(dir: &Path) -> std::io::Result<()> {
        fs::write(dir.join("cgroup.kill"), "1")
    }

    /// Removes instance `group`'s cgroup: its service leaves, then itself.
    pub fn remove_group(&self, group: &str) -> std::io::Result<()> {
        let dir = self.group_dir(group);
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    fs::remove_dir(e.path())?;
                }
            }
        }
        match fs::remove_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// What `dir`'s files say about its usage.
    pub fn usage(dir: &Path) -> Usage {
        let cpu = fs::read_to_string(dir.join("cpu.stat")).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse().ok())
        });
        Usage {
            memory_bytes: read_u64(&dir.join("memory.current")),
            cpu_usec: cpu,
            tasks: read_u64(&dir.join("pids.current")),
        }
    }

    /// Base directory.
    pub fn base(&self) -> &Path {
        &self.base
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    /// A plain directory stands in for the cgroup base: the files zigral-init writes for an
    /// instance are the ones a VM's `/sys/fs/cgroup/grp-desktop@N/` shows.
    #[test]
    fn group_cgroup_files() {
        let t = tempfile::tempdir().unwrap();
        let cg = Cgroups::at(t.path().to_path_buf(), true);
        let limits = GroupLimits {
            millicpus: Some(2000),
            memory: Some(4 << 30),
            pids: Some(4096),
        };
        let dir = cg.create_group("desktop@3", &limits).unwrap();
        assert_eq!(dir, t.path().join("grp-desktop@3"));
        assert_eq!(
            read(&dir.join("cgroup.subtree_control")),
            "+cpu +memory +pids"
        );
        assert_eq!(read(&dir.join("cpu.max")), "200000 100000");
        assert_eq!(read(&dir.join("memory.max")), (4u64 << 30).to_string());
        assert_eq!(read(&dir.join("pids.max")), "4096");

        // A service leaf inside the instance's cgroup (cgroupfs makes cgroup.procs itself).
        let leaf = dir.join("svc-chromium@3");
        fs::create_dir_all(&leaf).unwrap();
        fs::write(leaf.join("cgroup.procs"), "").unwrap();
        cg.prepare(Some("desktop@3"), "chromium@3", Some(0.5), None)
            .unwrap();
        assert_eq!(read(&leaf.join("cpu.max")), "50000 100000");
        assert!(!leaf.join("memory.max").exists());

        // A `limits` change: 1.5 CPUs, no memory cap, pids unchanged by the caller's merge.
        cg.set_limits(
            &dir,
            &GroupLimits {
                millicpus: Some(1500),
                memory: None,
                pids: Some(4096),
            },
        )
        .unwrap();
        assert_eq!(read(&dir.join("cpu.max")), "150000 100000");
        assert_eq!(read(&dir.join("memory.max")), "max");

        // Usage as the kernel reports it.
        fs::write(dir.join("memory.current"), "123456\n").unwrap();
        fs::write(
            dir.join("cpu.stat"),
            "usage_usec 7890\nuser_usec 7000\nsystem_usec 890\n",
        )
        .unwrap();
        fs::write(dir.join("pids.current"), "42\n").unwrap();
        fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert_eq!(
            Cgroups::usage(&dir),
            Usage {
                memory_bytes: Some(123456),
                cpu_usec: Some(7890),
                tasks: Some(42),
            }
        );
        assert!(Cgroups::populated(&dir));

        // Without the pids controller, pids.max is left alone.
        let nopids = Cgroups::at(t.path().to_path_buf(), false);
        let d2 = nopids.create_group("desktop@4", &limits).unwrap();
        assert_eq!(read(&d2.join("cgroup.subtree_control")), "+cpu +memory");
        assert!(!d2.join("pids.max").exists());
    }

    #[test]
    fn failed_write_restores_the_previous_values() {
        let t = tempfile::tempdir().unwrap();
        let cg = Cgroups::at(t.path().to_path_buf(), true);
        let dir = cg
            .create_group(
                "desktop@1",
                &GroupLimits {
                    millicpus: Some(1000),
                    memory: Some(1 << 30),
                    pids: Some(100),
                },
            )
            .unwrap();
        // pids.max cannot be written (a directory in its place): cpu.max and memory.max go back.
        fs::remove_file(dir.join("pids.max")).unwrap();
        fs::create_dir(dir.join("pids.max")).unwrap();
        let e = cg
            .set_limits(
                &dir,
                &GroupLimits {
                    millicpus: Some(500),
                    memory: Some(2 << 30),
                    pids: Some(50),
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("pids.max"), "{e}");
        assert_eq!(read(&dir.join("cpu.max")), "100000 100000");
        assert_eq!(read(&dir.join("memory.max")), (1u64 << 30).to_string());
    }
}
