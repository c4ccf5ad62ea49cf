//! cgroup v2 resource caps (`cpu.max`, `memory.max`): detects a writable cgroup v2 with the
//! cpu and memory controllers, creates one child cgroup per limited service, or logs why not.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// A delegated cgroup v2 subtree in which services get their own cgroups.
#[derive(Debug)]
pub struct Cgroups {
    base: PathBuf,
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

impl Cgroups {
    /// Detects a usable cgroup v2 subtree. Returns `None` (with the reason logged) when there
    /// is none; limits are then skipped.
    pub fn detect() -> Option<Cgroups> {
        let Some((mount, mine)) = own_cgroup() else {
            tracing::info!("cgroup v2 not mounted: cpu/memory limits skipped");
            return None;
        };
        let controllers = fs::read_to_string(mine.join("cgroup.controllers")).unwrap_or_default();
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        if !(has("cpu") && has("memory")) {
            tracing::info!(
                "cgroup v2 at {} lacks the cpu/memory controllers (has: {:?}): cpu/memory limits skipped",
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
                    "cgroup v2 at {} is not writable ({e}): cpu/memory limits skipped",
                    mine.display()
                );
                return None;
            }
        }
        if let Err(e) = fs::write(mine.join("cgroup.subtree_control"), "+cpu +memory") {
            tracing::info!(
                "cannot enable cpu/memory controllers in {} ({e}): cpu/memory limits skipped",
                mine.display()
            );
            return None;
        }
        tracing::info!("cgroup v2 limits enabled under {}", mine.display());
        Some(Cgroups { base: mine })
    }

    fn dir(&self, service: &str) -> PathBuf {
        self.base.join(format!("svc-{service}"))
    }

    /// Creates (or reuses) the cgroup for `service` with the given caps and returns its open
    /// `cgroup.procs` for the child to join.
    pub fn prepare(
        &self,
        service: &str,
        cpus: Option<f64>,
        memory: Option<u64>,
    ) -> std::io::Result<OwnedFd> {
        let dir = self.dir(service);
        fs::create_dir_all(&dir)?;
        let period: u64 = 100_000;
        let cpu = match cpus {
            Some(c) => format!("{} {period}", (c * period as f64).round() as u64),
            None => format!("max {period}"),
        };
        fs::write(dir.join("cpu.max"), cpu)?;
        let mem = memory.map_or_else(|| "max".to_string(), |m| m.to_string());
        fs::write(dir.join("memory.max"), mem)?;
        let f = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))?;
        Ok(OwnedFd::from(f))
    }

    /// Removes the cgroup of `service` (once its processes are gone).
    pub fn remove(&self, service: &str) {
        let _ = fs::remove_dir(self.dir(service));
    }

    /// Base directory.
    pub fn base(&self) -> &Path {
        &self.base
    }
}
