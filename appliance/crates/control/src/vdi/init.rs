//! The desktop requests the manager sends to zigral-init: spawn with params, wait until every
//! service of the instance is ready, change limits, destroy with purge, read status.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use zigral_init_protocol::{
    Destroyed, GroupLimits, GroupStatus, Request, ServiceState, Spawned, Status,
};

use crate::supervisor::{SupervisorError, request};

/// The template every desktop is an instance of.
pub const TEMPLATE: &str = "desktop";

/// How long one control-socket exchange may take (a destroy waits for the processes to end).
const EXCHANGE: Duration = Duration::from_secs(30);

/// How often readiness is polled while a desktop starts (zigral-init has no push channel).
const POLL: Duration = Duration::from_millis(20);

/// `desktop@N`.
pub fn group_name(n: u32) -> String {
    format!("{TEMPLATE}@{n}")
}

/// What a desktop is started with.
#[derive(Debug, Clone, Default)]
pub struct SpawnParams {
    /// `profile_dir` relative to the state dir (a persistent profile), or the template's.
    pub profile_dir: Option<String>,
    pub limits: GroupLimits,
}

impl SpawnParams {
    fn to_params(&self) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        if let Some(d) = &self.profile_dir {
            p.insert("profile_dir".into(), d.clone());
        }
        if let Some(m) = self.limits.millicpus {
            p.insert("cpus".into(), format!("{}.{:03}", m / 1000, m % 1000));
        }
        if let Some(b) = self.limits.memory {
            p.insert("memory".into(), b.to_string());
        }
        if let Some(x) = self.limits.pids {
            p.insert("pids".into(), x.to_string());
        }
        p
    }
}

/// Asks zigral-init to start desktop `n`.
pub async fn spawn(socket: &Path, n: u32, p: &SpawnParams) -> Result<Spawned, SupervisorError> {
    let req = Request::Spawn {
        template: TEMPLATE.into(),
        instance: n,
        params: p.to_params(),
    };
    request(socket, &req, EXCHANGE).await
}

/// Stops desktop `n` and deletes its per-desktop files (`purge`); answers once every process
/// is gone.
pub async fn destroy(socket: &Path, n: u32) -> Result<Destroyed, SupervisorError> {
    let req = Request::Destroy {
        template: TEMPLATE.into(),
        instance: n,
        purge: true,
    };
    request(socket, &req, EXCHANGE).await
}

/// Changes desktop `n`'s cgroup limits.
pub async fn set_limits(
    socket: &Path,
    n: u32,
    limits: GroupLimits,
) -> Result<GroupStatus, SupervisorError> {
    let req = Request::Limits {
        group: group_name(n),
        limits,
    };
    request(socket, &req, EXCHANGE).await
}

/// zigral-init's status (services and template instances with usage).
pub async fn status(socket: &Path) -> Result<Status, SupervisorError> {
    request(socket, &Request::Status, Duration::from_secs(5)).await
}

/// Where a starting desktop stands.
pub enum Readiness {
    Ready,
    Starting,
    /// A service failed for good, or the instance is gone.
    Failed(String),
}

/// Desktop `n`'s readiness in `st`.
pub fn readiness(st: &Status, n: u32) -> Readiness {
    let g = group_name(n);
    let mut any = false;
    let mut all_up = true;
    for s in st.group_services(&g) {
        any = true;
        match s.state {
            ServiceState::Failed => {
                return Readiness::Failed(format!(
                    "{} failed ({})",
                    s.name,
                    s.last_exit.as_deref().unwrap_or("no exit status")
                ));
            }
            st if st.is_up() => {}
            _ => all_up = false,
        }
    }
    match (any, all_up) {
        (false, _) => Readiness::Failed(format!("{g} is not running")),
        (true, true) => Readiness::Ready,
        (true, false) => Readiness::Starting,
    }
}

/// Waits until every service of desktop `n` is ready, `timeout` at most.
pub async fn wait_ready(socket: &Path, n: u32, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match status(socket).await {
            Ok(st) => match readiness(&st, n) {
                Readiness::Ready => return Ok(()),
                Readiness::Failed(why) => return Err(why),
                Readiness::Starting => {}
            },
            Err(e) => return Err(e.to_string()),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} was not ready within {} s",
                group_name(n),
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
