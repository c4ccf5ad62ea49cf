//! `zigral-init update apply`: one update from an accepted bundle to a committed slot, or back.
//!
//! Order (each step written to `status.json` and printed, so the serial console shows it):
//! verify (signature, manifest, newer than the running release unless forced) → unpack into
//! the inactive slot → create the gate file (the control plane refuses writes from now on) →
//! stop our services (the restart list, reversed) → copy the database aside → record
//! `trying` → switch `current` → start the services in order → health gate: every gate
//! service ready again within the deadline → commit (the new slot is good) or roll back
//! (switch back, restore the database when the store schema changed, start again) → remove the
//! gate file. Nothing before the switch changes what runs; a reboot after it comes back on the
//! good slot ([`super::slots::recover_at_boot`]).

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zigral_init_protocol::{Request, ServiceState, Status};
use zigral_update::{
    BUNDLE_EXT, GATE_FILE, Manifest, Phase, READY_DIR, Release, SIG_EXT, STATUS_FILE, UPDATES_DIR,
    UpdateStatus,
};

use super::slots::{Slots, Trying, copy_synced, write_atomic};
use super::{UpdaterError, now_ms, unpack};
use crate::control;

#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    /// The bundle's id: `<state>/updates/ready/<id>.tar.zst` and `.tar.zst.minisig`.
    #[arg(long)]
    pub id: String,
    /// 1: install even when the bundle is not newer than what runs.
    #[arg(long, default_value = "0")]
    pub force: String,
    #[arg(long)]
    pub state_dir: PathBuf,
    /// The slots directory (`a/`, `b/`, `current`, `state.json`).
    #[arg(long)]
    pub slots: PathBuf,
    /// The appliance's update public key (minisign).
    #[arg(long)]
    pub key: PathBuf,
    /// zigral-init's control socket (default `<state>/init.sock`).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Our services, in start order (stopped in reverse), comma-separated.
    #[arg(long, default_value = "proxy,control")]
    pub restart: String,
    /// Services that must be ready again for the new slot to be kept, comma-separated;
    /// `chromium@*` means every instance of that template service.
    #[arg(long, default_value = "proxy,control")]
    pub gate: String,
    /// How long the gate waits.
    #[arg(long, default_value = "90s")]
    pub deadline: String,
    /// The database file, relative to the state dir.
    #[arg(long, default_value = "zigral.redb")]
    pub db: String,
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

struct Run {
    args: ApplyArgs,
    socket: PathBuf,
    updates: PathBuf,
    status: UpdateStatus,
}

impl Run {
    fn set(&mut self, phase: Phase, message: String) {
        self.status.phase = phase;
        self.status.message = message;
        if phase.finished() {
            self.status.finished_ms = Some(now_ms());
        }
        println!("zigral-update: {}: {}", self.status.id, self.status.message);
        let body = serde_json::to_vec_pretty(&self.status).expect("status serializes");
        if let Err(e) = write_atomic(&self.updates.join(STATUS_FILE), &body, 0o644) {
            eprintln!("zigral-update: writing the status: {e}");
        }
    }

    fn call(&self, req: &Request) -> Result<serde_json::Value, UpdaterError> {
        control::call(&self.socket, req, Duration::from_secs(10))
            .map_err(|e| UpdaterError::Supervisor(e.to_string()))
    }

    fn status(&self) -> Result<Status, UpdaterError> {
        let v = self.call(&Request::Status)?;
        serde_json::from_value(v).map_err(|e| UpdaterError::Supervisor(e.to_string()))
    }

    /// Stops `services` (in reverse order) and waits until none has a process.
    fn stop(&self, services: &[String], timeout: Duration) -> Result<(), UpdaterError> {
        for s in services.iter().rev() {
            self.call(&Request::Stop { service: s.clone() })?;
        }
        let end = Instant::now() + timeout;
        loop {
            let st = self.status()?;
            let running: Vec<&str> = services
                .iter()
                .filter(|n| st.service(n).is_some_and(|s| s.pid.is_some()))
                .map(String::as_str)
                .collect();
            if running.is_empty() {
                return Ok(());
            }
            if Instant::now() > end {
                return Err(UpdaterError::Supervisor(format!(
                    "{} did not stop within {timeout:?}",
                    running.join(", ")
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn start(&self, services: &[String]) -> Result<u64, UpdaterError> {
        let since = self.status()?.boot.map(|b| b.uptime_ms).unwrap_or(0);
        for s in services {
            self.call(&Request::Start { service: s.clone() })?;
        }
        Ok(since)
    }

    /// Waits until every gate service is ready (restarted ones: ready again since `since`, in
    /// zigral-init's uptime). Err: a sentence naming what was not ready.
    fn gate(&self, restarted: &[String], since: u64, deadline: Duration) -> Result<(), String> {
        let gate = list(&self.args.gate);
        let end = Instant::now() + deadline;
        loop {
            let mut missing = Vec::new();
            match self.status() {
                Ok(st) => {
                    // `chromium@*`: every instance of that template service (none is fine).
                    let names: Vec<String> = gate
                        .iter()
                        .flat_map(|g| match g.strip_suffix('*') {
                            Some(prefix) => st
                                .services
                                .iter()
                                .filter(|s| s.name.starts_with(prefix))
                                .map(|s| s.name.clone())
                                .collect::<Vec<_>>(),
                            None => vec![g.clone()],
                        })
                        .collect();
                    for g in &names {
                        let ok = st.service(g).is_some_and(|s| {
                            matches!(s.state, ServiceState::Ready | ServiceState::Running)
                                && s.ready_at_ms
                                    .is_some_and(|at| !restarted.contains(g) || at >= since)
                        });
                        if !ok {
                            let state =
                                st.service(g).map(|s| s.state.as_str()).unwrap_or("unknown");
                            missing.push(format!("{g} ({state})"));
                        }
                    }
                }
                Err(e) => missing.push(e.to_string()),
            }
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > end {
                return Err(format!(
                    "not ready within {} s: {}",
                    deadline.as_secs(),
                    missing.join(", ")
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn open_nofollow(p: &Path) -> Result<std::fs::File, UpdaterError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
        .map_err(|e| UpdaterError::io(format!("opening {}", p.display()), e))
}

/// The services' definitions inside a slot (zigral-init's config file in the image).
const INIT_TOML: &str = "init.toml";

fn read_release(dir: &Path) -> Release {
    std::fs::read_to_string(dir.join("release"))
        .ok()
        .and_then(|t| Release::parse(&t).ok())
        .unwrap_or_else(|| Release::parse("").expect("empty release parses"))
}

/// Verifies the bundle and unpacks it into the inactive slot; nothing that runs changes.
fn prepare(run: &mut Run, slots: &Slots, active: &str) -> Result<Manifest, UpdaterError> {
    let a = &run.args;
    let ready = run.updates.join(READY_DIR);
    let bundle = ready.join(format!("{}.{BUNDLE_EXT}", a.id));
    let sig = ready.join(format!("{}.{SIG_EXT}", a.id));
    let key = std::fs::read_to_string(&a.key)
        .map_err(|e| UpdaterError::io(format!("reading the update key {}", a.key.display()), e))?;
    let mut sig_text = String::new();
    std::io::Read::read_to_string(&mut open_nofollow(&sig)?, &mut sig_text)
        .map_err(|e| UpdaterError::io(format!("reading {}", sig.display()), e))?;
    let manifest = zigral_update::verify(&key, &sig_text, open_nofollow(&bundle)?)?;
    let running = read_release(&slots.dir(active));
    zigral_update::check_newer(&manifest, &running, a.force == "1")?;
    run.status.version = manifest.version.clone();
    run.status.from_version = running.version.clone();

    let target = Slots::other(active);
    run.set(
        Phase::Unpacking,
        format!("unpacking {} into slot {target}", manifest.version),
    );
    let dir = slots.dir(target);
    let tmp = slots.root.join(format!(".{target}.new"));
    for d in [&dir, &tmp] {
        if d.exists() {
            std::fs::remove_dir_all(d)
                .map_err(|e| UpdaterError::io(format!("clearing {}", d.display()), e))?;
        }
    }
    // The signature covered these bytes: read them again only through the verified path.
    unpack::unpack(std::io::BufReader::new(open_nofollow(&bundle)?), &tmp)?;
    let rel = read_release(&tmp);
    if rel.version != manifest.version || rel.serial != manifest.serial {
        return Err(UpdaterError::Corrupt(format!(
            "its release file says {} serial {}, its signature {} serial {}",
            rel.version, rel.serial, manifest.version, manifest.serial
        )));
    }
    // The image reads the services' definitions from the slot (/etc/zigral/init.toml points
    // into it): a bundle without them would leave nothing to start after the switch.
    if slots.dir(active).join(INIT_TOML).exists() && !tmp.join(INIT_TOML).is_file() {
        return Err(UpdaterError::Corrupt(format!(
            "it has no {INIT_TOML}, which this appliance reads its services from"
        )));
    }
    nix::unistd::sync();
    std::fs::rename(&tmp, &dir)
        .map_err(|e| UpdaterError::io(format!("renaming into {}", dir.display()), e))?;
    super::slots::sync_dir(&slots.root)?;
    Ok(manifest)
}

pub fn main(a: &ApplyArgs) -> i32 {
    let updates = a.state_dir.join(UPDATES_DIR);
    let slots = Slots::new(&a.slots);
    let mut run = Run {
        socket: a
            .socket
            .clone()
            .unwrap_or_else(|| a.state_dir.join("init.sock")),
        updates: updates.clone(),
        args: a.clone(),
        status: UpdateStatus {
            id: a.id.clone(),
            phase: Phase::Verifying,
            message: String::new(),
            version: "?".into(),
            from_version: "?".into(),
            slot: "?".into(),
            active_slot: "?".into(),
            forced: a.force == "1",
            started_ms: now_ms(),
            finished_ms: None,
        },
    };
    let deadline = match super::parse_deadline(&a.deadline) {
        Ok(d) => d,
        Err(e) => {
            run.set(Phase::Failed, e);
            return 2;
        }
    };
    let active = match slots.active() {
        Ok(s) => s,
        Err(e) => {
            run.set(Phase::Failed, format!("nothing changed: {e}"));
            return 1;
        }
    };
    run.status.active_slot = active.clone();
    run.status.slot = Slots::other(&active).to_string();
    run.set(
        Phase::Verifying,
        "checking the signature and the version".into(),
    );
    let manifest = match prepare(&mut run, &slots, &active) {
        Ok(m) => m,
        Err(e) => {
            run.set(Phase::Failed, format!("refused, nothing changed: {e}"));
            return 1;
        }
    };
    switch_and_gate(&mut run, &slots, &active, &manifest, deadline)
}

/// Undoes [`switch_and_gate`]'s steps before the switch: our services run again, writes resume.
fn abandon(run: &mut Run, services: &[String], gate_file: &Path, e: UpdaterError) -> i32 {
    let _ = run.start(services);
    let _ = std::fs::remove_file(gate_file);
    run.set(
        Phase::Failed,
        format!("stopped before the switch, nothing changed: {e}"),
    );
    1
}

/// Everything from the gate file to the end; the exit code. Failures before the switch end as
/// [`Phase::Failed`] with the old services restarted; any failure after it (the gate, or
/// zigral-init not answering) switches back.
fn switch_and_gate(
    run: &mut Run,
    slots: &Slots,
    active: &str,
    manifest: &Manifest,
    deadline: Duration,
) -> i32 {
    let target = Slots::other(active).to_string();
    let services = list(&run.args.restart);
    let gate_file = run.updates.join(GATE_FILE);
    if let Err(e) = write_atomic(&gate_file, b"update in progress\n", 0o644) {
        return abandon(run, &services, &gate_file, e);
    }
    run.set(
        Phase::Snapshot,
        format!(
            "stopping {} and copying the database aside",
            services.join(", ")
        ),
    );
    let db = run.args.state_dir.join(&run.args.db);
    let snapshot = slots.root.join("snapshot.redb");
    let have_db = db.exists();
    let old = read_release(&slots.dir(active));
    let restore_db = manifest.schema != old.schema;
    let prepared = (|| {
        run.stop(&services, Duration::from_secs(60))?;
        if have_db {
            copy_synced(&db, &snapshot)?;
        }
        let mut st = slots.state()?;
        st.trying = Some(Trying {
            slot: target.clone(),
            id: run.args.id.clone(),
            version: manifest.version.clone(),
            snapshot: have_db.then(|| snapshot.clone()),
            db: have_db.then(|| db.clone()),
            restore_db,
        });
        slots.write_state(&st)?;
        Ok::<_, UpdaterError>(st)
    })();
    let mut st = match prepared {
        Ok(st) => st,
        Err(e) => return abandon(run, &services, &gate_file, e),
    };
    st.trying = None;
    // From here on `trying` is on disk: a crash or reboot comes back on `st.good`.
    let verdict = (|| {
        slots.switch(&target)?;
        run.status.active_slot = target.clone();
        // The services' definitions live in the slot too (init.toml): take the new ones.
        run.call(&Request::Reload)?;
        run.set(
            Phase::Restarting,
            format!(
                "switched to slot {target}; starting {}",
                services.join(", ")
            ),
        );
        let since = run.start(&services)?;
        run.set(
            Phase::Gate,
            format!(
                "waiting up to {} s for {} to be ready",
                deadline.as_secs(),
                run.args.gate
            ),
        );
        Ok::<_, UpdaterError>(run.gate(&services, since, deadline))
    })();
    let why = match verdict {
        Ok(Ok(())) => {
            st.good = target.clone();
            match slots.write_state(&st) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&gate_file);
                    run.set(
                        Phase::Committed,
                        format!(
                            "version {} is running (slot {target}); version {} stays in slot {active} for the next update",
                            manifest.version, old.version
                        ),
                    );
                    return 0;
                }
                Err(e) => {
                    st.good = active.to_string();
                    format!("the new slot could not be recorded as good: {e}")
                }
            }
        }
        Ok(Err(why)) => why,
        Err(e) => e.to_string(),
    };
    println!(
        "zigral-update: {}: health gate failed: {why}; rolling back",
        run.args.id
    );
    let back = (|| {
        run.stop(&services, Duration::from_secs(60))?;
        slots.switch(active)?;
        run.call(&Request::Reload)?;
        if restore_db && have_db {
            copy_synced(&snapshot, &db)?;
        }
        slots.write_state(&st)?;
        run.status.active_slot = active.to_string();
        let since = run.start(&services)?;
        Ok::<_, UpdaterError>(run.gate(&services, since, deadline))
    })();
    let _ = std::fs::remove_file(&gate_file);
    let tail = match back {
        Ok(Ok(())) => String::new(),
        Ok(Err(e)) => format!(", which is not healthy either: {e}"),
        // The slot state still says `trying`: the next start of zigral-init finishes this.
        Err(e) => format!(
            ", but switching back failed ({e}): a restart of the appliance completes the rollback"
        ),
    };
    run.set(
        Phase::RolledBack,
        format!(
            "version {} failed its health check ({why}); rolled back to version {} (slot {active}){tail}",
            manifest.version, old.version
        ),
    );
    1
}
