//! The control-socket server: binding the socket, accepting clients (SO_PEERCRED check),
//! reading request lines, handling requests (spawn/destroy/limits of template instances
//! included), the `status` result with each instance's usage, and writing replies.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

use super::procfs::{proc_table, tree_usage};
use super::service::Group;
use super::{PendingDestroy, State, Supervisor, SupervisorError, io_err, ms};
use crate::cgroup::Cgroups;
use crate::config::{Instance, TemplateDef, check_group_limits, check_instance, instantiate};
use crate::control::{self, GroupLimits, GroupStatus, Request};

#[derive(Debug)]
pub(super) struct Client {
    pub(super) id: u64,
    pub(super) stream: UnixStream,
    pub(super) inbuf: Vec<u8>,
    pub(super) outbuf: Vec<u8>,
    pub(super) closed: bool,
}

pub(super) fn bind_socket(path: &std::path::Path) -> Result<UnixListener, SupervisorError> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(SupervisorError::AlreadyRunning(path.display().to_string()));
        }
        let _ = std::fs::remove_file(path);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    }
    // 0o177: the socket is born 0600 (no moment at which a client sees it wider).
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = l.map_err(io_err(format!("binding control socket {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("chmod control socket"))?;
    l.set_nonblocking(true)
        .map_err(io_err("control socket nonblocking"))?;
    Ok(l)
}

impl Supervisor {
    pub(super) fn accept_clients(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // Only the supervisor's own user (or root) may talk to it.
                    let me = nix::unistd::geteuid().as_raw();
                    let allowed = nix::sys::socket::getsockopt(
                        &stream,
                        nix::sys::socket::sockopt::PeerCredentials,
                    )
                    .map(|c| c.uid() == me || c.uid() == 0 || Some(c.uid()) == self.state_uid)
                    .unwrap_or(false);
                    if !allowed || stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let id = self.next_client;
                    self.next_client += 1;
                    self.clients.push(Client {
                        id,
                        stream,
                        inbuf: Vec::new(),
                        outbuf: Vec::new(),
                        closed: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("control socket accept: {e}");
                    break;
                }
            }
        }
    }

    pub(super) fn service_client(&mut self, k: usize) {
        let mut buf = [0u8; 4096];
        let mut eof = false;
        loop {
            match self.clients[k].stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => self.clients[k].inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
            if self.clients[k].inbuf.len() > control::MAX_LINE {
                break;
            }
        }
        while let Some(nl) = self.clients[k].inbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.clients[k].inbuf.drain(..=nl).collect();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let id = self.clients[k].id;
            if let Some(reply) = self.handle_request(id, text) {
                self.clients[k].outbuf.extend_from_slice(reply.as_bytes());
            }
        }
        if self.clients[k].inbuf.len() > control::MAX_LINE {
            let c = &mut self.clients[k];
            c.inbuf.clear();
            c.outbuf
                .extend_from_slice(control::err_line("request line too long").as_bytes());
            flush_client(c);
            c.closed = true;
            return;
        }
        let c = &mut self.clients[k];
        flush_client(c);
        if eof {
            // Keep a client with a deferred reply open until the reply is written.
            let waiting = self.pending_destroy.iter().any(|d| d.client == c.id);
            if !waiting {
                c.closed = true;
            }
        }
    }

    /// Handles one request; `None` when the reply is deferred.
    fn handle_request(&mut self, client: u64, line: &str) -> Option<String> {
        let req = match control::parse_request(line) {
            Ok(r) => r,
            Err(e) => return Some(control::err_line(&e)),
        };
        if self.shutdown.is_some() && req != Request::Status {
            return Some(control::err_line("shutting down"));
        }
        let not_found = |n: &str| control::err_line(&format!("unknown service {n:?}"));
        Some(match req {
            Request::Status => control::ok_line(&self.status()),
            Request::Start { service: n } => {
                let Some(i) = self.idx(&n) else {
                    return Some(not_found(&n));
                };
                let s = &mut self.services[i];
                s.want_up = true;
                s.restart_pending = false;
                if matches!(s.state, State::Stopped | State::Failed) {
                    s.state = State::Waiting;
                    s.consecutive = 0;
                }
                tracing::info!("control: start {n}");
                control::ok_line(&control::ServiceReply {
                    service: n,
                    state: Some(s.state.public()),
                })
            }
            Request::Stop { service: n } => {
                let Some(i) = self.idx(&n) else {
                    return Some(not_found(&n));
                };
                let s = &mut self.services[i];
                s.want_up = false;
                s.restart_pending = false;
                tracing::info!("control: stop {n}");
                control::ok_line(&control::ServiceReply {
                    service: n,
                    state: None,
                })
            }
            Request::Restart { service: n } => {
                let Some(i) = self.idx(&n) else {
                    return Some(not_found(&n));
                };
                let s = &mut self.services[i];
                if s.pid.is_some() {
                    s.want_up = false;
                    s.restart_pending = true;
                } else {
                    s.want_up = true;
                    s.consecutive = 0;
                    s.state = State::Waiting;
                }
                tracing::info!("control: restart {n}");
                control::ok_line(&control::ServiceReply {
                    service: n,
                    state: None,
                })
            }
            Request::Pause { service } => self.pause(&service),
            Request::Resume { service } => self.resume(&service),
            Request::Spawn {
                template,
                instance,
                params,
            } => self.spawn_instance(&template, instance, &params),
            Request::Destroy {
                template,
                instance,
                purge,
            } => {
                let group = format!("{template}@{instance}");
                if !self
                    .services
                    .iter()
                    .any(|s| s.spec.group.as_deref() == Some(group.as_str()))
                {
                    if purge {
                        // Nothing runs (a reboot ended it): only its files go, so a later
                        // instance with this number starts clean.
                        return Some(self.purge_only(&template, instance));
                    }
                    return Some(control::err_line(&format!("no instance {group}")));
                }
                if self.pending_destroy.iter().any(|d| d.group == group) {
                    return Some(control::err_line(&format!(
                        "{group} is already being destroyed"
                    )));
                }
                tracing::info!(
                    "control: destroy {group}{}",
                    if purge { " (purge)" } else { "" }
                );
                for s in &mut self.services {
                    if s.spec.group.as_deref() == Some(group.as_str()) {
                        s.want_up = false;
                        s.restart_pending = false;
                    }
                }
                self.pending_destroy.push(PendingDestroy {
                    client,
                    group,
                    purge,
                });
                return None;
            }
            Request::Limits { group, limits } => self.set_group_limits(&group, limits),
            Request::Shutdown { action } => {
                self.begin_shutdown(action, "control socket");
                control::ok_line(&control::ShutdownReply { action })
            }
            Request::Reload => self.reload(),
        })
    }

    /// `reload`: the config file read again; see [`Request::Reload`] for what it changes.
    fn reload(&mut self) -> String {
        let Some(src) = &self.opts.config else {
            return control::err_line("reload: this zigral-init was not started from a file");
        };
        let new = match crate::config::load(&src.path, &src.overrides) {
            Ok(c) => c,
            Err(e) => {
                return control::err_line(&format!(
                    "reload: {}: {e}; nothing changed",
                    src.path.display()
                ));
            }
        };
        let mut r = control::ReloadReply::default();
        let top = |s: &crate::config::ServiceSpec| s.group.is_none();
        for svc in self.services.iter_mut().filter(|s| top(&s.spec)) {
            let name = svc.spec.name.clone();
            match new.services.iter().find(|n| top(n) && n.name == name) {
                None => r.next_boot.push(name),
                Some(n) if *n == svc.spec => r.unchanged += 1,
                Some(n) if svc.pid.is_none() => {
                    svc.spec = n.clone();
                    r.updated.push(name);
                }
                Some(_) => r.deferred.push(name),
            }
        }
        for n in new.services.iter().filter(|n| top(n)) {
            if !self
                .services
                .iter()
                .any(|s| top(&s.spec) && s.spec.name == n.name)
            {
                r.next_boot.push(n.name.clone());
            }
        }
        for t in &new.templates {
            match self.cfg.templates.iter_mut().find(|o| o.name == t.name) {
                Some(o) if o == t => r.unchanged += 1,
                Some(o) => {
                    *o = t.clone();
                    r.updated.push(format!("{}@", t.name));
                }
                None => r.next_boot.push(format!("{}@", t.name)),
            }
        }
        for o in &self.cfg.templates {
            if !new.templates.iter().any(|t| t.name == o.name) {
                r.next_boot.push(format!("{}@", o.name));
            }
        }
        // Instances spawned from now on expand the new variables.
        self.cfg.vars = new.vars;
        tracing::info!(
            "reloaded {}: updated [{}], deferred [{}], next boot [{}], {} unchanged",
            src.path.display(),
            r.updated.join(", "),
            r.deferred.join(", "),
            r.next_boot.join(", "),
            r.unchanged
        );
        control::ok_line(&r)
    }

    fn spawn_instance(
        &mut self,
        template: &str,
        n: u32,
        params: &BTreeMap<String, String>,
    ) -> String {
        if let Err(e) = self.template_checked(template, n) {
            return control::err_line(&e);
        }
        let group = format!("{template}@{n}");
        if self
            .services
            .iter()
            .any(|s| s.spec.group.as_deref() == Some(group.as_str()))
        {
            return control::err_line(&format!("{group} already exists"));
        }
        let live: std::collections::BTreeSet<&str> = self
            .services
            .iter()
            .filter_map(|s| s.spec.group.as_deref())
            .collect();
        let max = self.cfg.settings.max_instances.unwrap_or(16) as usize;
        if live.len() >= max {
            return control::err_line(&format!(
                "{} instances already running (max_instances = {max})",
                live.len()
            ));
        }
        match self.instance_of(template, n, params) {
            Ok(inst) => {
                let names: Vec<String> = inst.services.iter().map(|s| s.name.clone()).collect();
                if let Some(i) = self.group_idx(&group) {
                    // A leftover record of the same instance is replaced.
                    self.groups.remove(i);
                }
                tracing::info!(
                    "control: spawn {group}: {}{}",
                    names.join(", "),
                    if params.is_empty() {
                        String::new()
                    } else {
                        format!(" with {params:?}")
                    }
                );
                self.add_group(inst.group);
                for s in inst.services {
                    if let Some(i) = self.idx(&s.name) {
                        // A leftover (stopped) service of the same name is replaced.
                        self.services.remove(i);
                    }
                    self.add_service(s);
                }
                control::ok_line(&control::Spawned {
                    group,
                    services: names,
                })
            }
            Err(e) => control::err_line(&e),
        }
    }

    /// The template named `template`, if instance `n` of it may exist.
    fn template_checked(&self, template: &str, n: u32) -> Result<TemplateDef, String> {
        let tpl = self
            .cfg
            .templates
            .iter()
            .find(|t| t.name == template)
            .cloned()
            .ok_or_else(|| format!("unknown template {template:?}"))?;
        check_instance(n, !self.cfg.private_ports.is_empty())?;
        Ok(tpl)
    }

    /// Instance `n` of `template` with `params`, built as `spawn` would start it.
    fn instance_of(
        &self,
        template: &str,
        n: u32,
        params: &BTreeMap<String, String>,
    ) -> Result<Instance, String> {
        let tpl = self.template_checked(template, n)?;
        let globals = self
            .services
            .iter()
            .filter(|s| s.spec.group.is_none())
            .map(|s| s.spec.name.clone())
            .collect();
        instantiate(
            &tpl,
            n,
            params,
            &self.cfg.vars,
            &self.cfg.state_dir,
            &globals,
        )
        .map_err(|errs| errs.join("; "))
    }

    /// `destroy` with `purge` of an instance that is not running: deletes the template's
    /// `purge` paths of that instance (default params) and answers `Destroyed` with no
    /// services.
    fn purge_only(&mut self, template: &str, n: u32) -> String {
        let group = format!("{template}@{n}");
        let inst = match self.instance_of(template, n, &BTreeMap::new()) {
            Ok(i) => i,
            Err(e) => return control::err_line(&e),
        };
        let mut failed = Vec::new();
        for p in &inst.group.purge {
            match crate::privilege::remove_inside(&self.cfg.state_dir, p) {
                Ok(true) => tracing::info!("{group} (not running): purged {}", p.display()),
                Ok(false) => {}
                Err(e) => failed.push(format!("{}: {e}", p.display())),
            }
        }
        if failed.is_empty() {
            control::ok_line(&control::Destroyed {
                destroyed: group,
                services: Vec::new(),
            })
        } else {
            control::err_line(&format!("{group}: purge failed: {}", failed.join("; ")))
        }
    }

    /// A `limits` request: checks the values, merges them into the instance's limits, writes
    /// its cgroup (nothing changes when that fails) and answers its [`GroupStatus`].
    fn set_group_limits(&mut self, group: &str, change: GroupLimits) -> String {
        let Some(gi) = self.group_idx(group) else {
            return control::err_line(&format!("no instance {group}"));
        };
        if let Err(e) = check_group_limits(&change) {
            return control::err_line(&format!("{group}: bad limits: {e}"));
        }
        let old = self.groups[gi].spec.limits;
        let new = GroupLimits {
            millicpus: change.millicpus.or(old.millicpus),
            memory: change.memory.or(old.memory),
            pids: change.pids.or(old.pids),
        };
        match (&self.cgroups, &self.groups[gi].cgroup) {
            (Some(cg), Some(dir)) => {
                if let Err(e) = cg.set_limits(dir, &new) {
                    return control::err_line(&format!("{group}: limits unchanged: {e}"));
                }
            }
            _ => self.tell_unenforced(group),
        }
        tracing::info!("control: limits {group}: {new:?}");
        self.groups[gi].spec.limits = new;
        let table = self.groups[gi]
            .cgroup
            .is_none()
            .then(proc_table)
            .unwrap_or_default();
        control::ok_line(&self.group_status(&self.groups[gi], &table))
    }

    /// True while a process of instance `group` is left: a service's main process, or (with a
    /// cgroup) anything in the instance's cgroup, which then gets SIGKILL.
    fn instance_alive(&self, group: &str) -> bool {
        if self
            .services
            .iter()
            .any(|s| s.spec.group.as_deref() == Some(group) && s.pid.is_some())
        {
            return true;
        }
        let Some(dir) = self
            .groups
            .iter()
            .find(|g| g.spec.name == group)
            .and_then(|g| g.cgroup.as_ref())
        else {
            return false;
        };
        if !Cgroups::populated(dir) {
            return false;
        }
        // Something escaped its service's process group (a daemon): end it too.
        if let Err(e) = Cgroups::kill(dir) {
            tracing::warn!("{group}: cgroup.kill: {e}");
            return false;
        }
        true
    }

    pub(super) fn flush_destroys(&mut self) {
        let mut k = 0;
        while k < self.pending_destroy.len() {
            if self.instance_alive(&self.pending_destroy[k].group) {
                k += 1;
                continue;
            }
            let PendingDestroy {
                client,
                group,
                purge,
            } = self.pending_destroy.remove(k);
            let names: Vec<String> = self
                .services
                .iter()
                .filter(|s| s.spec.group.as_deref() == Some(group.as_str()))
                .map(|s| s.spec.name.clone())
                .collect();
            for n in &names {
                self.sinks.remove(n);
                if let Some(cg) = &self.cgroups {
                    cg.remove(Some(&group), n);
                }
            }
            self.services
                .retain(|s| s.spec.group.as_deref() != Some(group.as_str()));
            let rec = self.group_idx(&group).map(|gi| self.groups.remove(gi));
            if let (
                Some(cg),
                Some(Group {
                    cgroup: Some(_), ..
                }),
            ) = (&self.cgroups, &rec)
                && let Err(e) = cg.remove_group(&group)
            {
                tracing::warn!("{group}: removing its cgroup: {e}");
            }
            let mut failed = Vec::new();
            if purge && let Some(rec) = &rec {
                for p in &rec.spec.purge {
                    match crate::privilege::remove_inside(&self.cfg.state_dir, p) {
                        Ok(true) => tracing::info!("{group}: purged {}", p.display()),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!("{group}: purge {}: {e}", p.display());
                            failed.push(format!("{}: {e}", p.display()));
                        }
                    }
                }
            }
            tracing::info!("destroyed {group}");
            let reply = if failed.is_empty() {
                control::ok_line(&control::Destroyed {
                    destroyed: group,
                    services: names,
                })
            } else {
                control::err_line(&format!(
                    "{group} destroyed, but purge failed: {}",
                    failed.join("; ")
                ))
            };
            if let Some(c) = self.clients.iter_mut().find(|c| c.id == client) {
                c.outbuf.extend_from_slice(reply.as_bytes());
                flush_client(c);
            }
        }
    }

    /// One instance in a `status` (or `limits`) result. `table` is /proc's process table,
    /// read once by the caller when some instance has no cgroup to read usage from.
    fn group_status(&self, g: &Group, table: &[super::procfs::ProcStat]) -> GroupStatus {
        let usage = g.cgroup.as_deref().map(Cgroups::usage).unwrap_or_default();
        let (rss, cpu, n) =
            if usage.memory_bytes.is_some() && usage.cpu_usec.is_some() && usage.tasks.is_some() {
                (0, 0, 0)
            } else {
                let roots: Vec<i32> = self
                    .services
                    .iter()
                    .filter(|s| s.spec.group.as_deref() == Some(g.spec.name.as_str()))
                    .filter_map(|s| s.pid.map(|p| p.as_raw()))
                    .collect();
                tree_usage(table, &roots)
            };
        GroupStatus {
            name: g.spec.name.clone(),
            template: g.spec.template.clone(),
            instance: g.spec.instance,
            params: g.spec.params.clone(),
            limits: g.spec.limits,
            cgroup: g.cgroup.as_ref().map(|d| d.display().to_string()),
            memory_bytes: usage.memory_bytes.or(Some(rss)),
            cpu_usec: usage.cpu_usec.or(Some(cpu)),
            tasks: usage.tasks.or(Some(n)),
        }
    }

    /// The `status` result.
    pub fn status(&self) -> control::Status {
        let now = Instant::now();
        let services = self
            .services
            .iter()
            .map(|s| control::ServiceStatus {
                name: s.spec.name.clone(),
                group: s.spec.group.clone(),
                state: s.state.public(),
                pid: s.pid.map(|p| p.as_raw()),
                restarts: s.restarts,
                last_exit: s.last_exit.clone(),
                next_restart_ms: match s.state {
                    State::Backoff { next_start } => {
                        Some(ms(next_start.saturating_duration_since(now)))
                    }
                    _ => None,
                },
                backoff_ms: s.backoff.map(ms),
                uptime_ms: s.pid.and(s.started_at).map(|t| ms(t.elapsed())),
                ready_ms: s.ready_after.map(ms),
                ready_at_ms: s
                    .started_at
                    .zip(s.ready_after)
                    .map(|(t, r)| ms(t.saturating_duration_since(self.started) + r)),
                paused: s.paused,
            })
            .collect();
        let need_proc = self.groups.iter().any(|g| {
            let u = g.cgroup.as_deref().map(Cgroups::usage).unwrap_or_default();
            u.memory_bytes.is_none() || u.cpu_usec.is_none() || u.tasks.is_none()
        });
        let table = if need_proc { proc_table() } else { Vec::new() };
        let groups = self
            .groups
            .iter()
            .map(|g| self.group_status(g, &table))
            .collect();
        control::Status {
            services,
            groups,
            shutting_down: self.shutdown.is_some(),
            boot: Some(control::BootTimeline {
                kernel_ms: self.kernel_ms,
                uptime_ms: ms(self.started.elapsed()),
                all_ready_ms: self.all_ready.map(ms),
            }),
        }
    }
}

pub(super) fn flush_client(c: &mut Client) {
    while !c.outbuf.is_empty() {
        match c.stream.write(&c.outbuf) {
            Ok(0) => {
                c.closed = true;
                return;
            }
            Ok(n) => {
                c.outbuf.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                c.closed = true;
                return;
            }
        }
    }
}
