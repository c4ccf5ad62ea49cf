//! Starting one service process: seeded files and directories, its own session and process
//! group, rlimits, cgroup membership, user/group switch, stdout/stderr into a log pipe.

use std::ffi::CString;
use std::io::PipeReader;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Pid, Uid};

use crate::config::{FileContent, ServiceSpec};
use crate::privilege::{self, Owner, PrivilegeError};

/// A started service process.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    /// Read end of the pipe carrying the service's stdout and stderr (non-blocking).
    pub output: PipeReader,
}

/// Why a service could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{0}")]
    Privilege(#[from] PrivilegeError),
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    #[error("{0}")]
    Sys(#[from] nix::Error),
    #[error("pipe: {0}")]
    Pipe(std::io::Error),
    #[error("cannot execute {command:?}: {err}")]
    Exec {
        command: String,
        err: std::io::Error,
    },
}

struct Ids {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
}

/// The user a service runs as: its `user` when the supervisor is root, else none (every
/// service runs as the supervisor's own user).
fn effective_user(spec: &ServiceSpec) -> Option<&str> {
    spec.user.as_deref().filter(|_| privilege::is_root())
}

fn resolve_ids(spec: &ServiceSpec) -> Result<Option<(Ids, String, String)>, SpawnError> {
    let Some(uname) = effective_user(spec) else {
        if let Some(g) = &spec.group_name {
            let grp = nix::unistd::Group::from_name(g)?
                .ok_or_else(|| SpawnError::UnknownGroup(g.clone()))?;
            let uid = Uid::current();
            return Ok(Some((
                Ids {
                    uid,
                    gid: grp.gid,
                    groups: vec![grp.gid],
                },
                String::new(),
                String::new(),
            )));
        }
        return Ok(None);
    };
    let user = nix::unistd::User::from_name(uname)?
        .ok_or_else(|| SpawnError::UnknownUser(uname.to_owned()))?;
    let gid = match &spec.group_name {
        Some(g) => {
            nix::unistd::Group::from_name(g)?
                .ok_or_else(|| SpawnError::UnknownGroup(g.clone()))?
                .gid
        }
        None => user.gid,
    };
    let cname = CString::new(uname).map_err(|_| SpawnError::UnknownUser(uname.to_owned()))?;
    let groups = nix::unistd::getgrouplist(&cname, gid).unwrap_or_else(|_| vec![gid]);
    Ok(Some((
        Ids {
            uid: user.uid,
            gid,
            groups,
        },
        user.dir.display().to_string(),
        uname.to_owned(),
    )))
}

/// The owner a prepared path gets: `owner` (or the service's user) with `group`; none when
/// the supervisor is not root or nobody is named.
fn owner_of(
    spec: &ServiceSpec,
    owner: Option<&str>,
    group: Option<&str>,
) -> Result<Option<Owner>, SpawnError> {
    if !privilege::is_root() {
        return Ok(None);
    }
    let Some(name) = owner.or(spec.user.as_deref()) else {
        return Ok(None);
    };
    Ok(Some(Owner::resolve(
        name,
        group.or(
            // A group given for the service applies to its own files by default.
            if owner.is_none() {
                spec.group_name.as_deref()
            } else {
                None
            },
        ),
    )?))
}

/// Creates the service's user (when asked and root), its directories and seeds its files
/// (existing files are kept unless `replace`), with their owners and modes.
pub fn prepare(spec: &ServiceSpec) -> Result<(), SpawnError> {
    if spec.create_user
        && privilege::is_root()
        && let Some(u) = &spec.user
    {
        let home = spec
            .env
            .iter()
            .find(|(k, _)| k == "HOME")
            .map(|(_, v)| std::path::PathBuf::from(v))
            .unwrap_or_else(|| "/nonexistent".into());
        privilege::ensure_user(u, &home)?;
    }
    for d in &spec.mkdir {
        let owner = owner_of(spec, d.owner.as_deref(), d.group.as_deref())?;
        privilege::make_dir(&d.path, d.mode, owner, d.recursive)?;
    }
    for f in &spec.files {
        if f.path.exists() && !f.replace {
            continue;
        }
        let owner = owner_of(spec, f.owner.as_deref(), f.group.as_deref())?;
        let data = match &f.content {
            FileContent::Text(t) => t.as_bytes().to_vec(),
            FileContent::Xauthority(display) => privilege::xauthority(*display)?,
        };
        privilege::write_file(&f.path, &data, f.mode, owner)?;
    }
    Ok(())
}

/// Starts `spec`. `cgroup_procs` is an open `cgroup.procs` file the child joins before exec.
pub fn spawn(spec: &ServiceSpec, cgroup_procs: Option<&OwnedFd>) -> Result<Spawned, SpawnError> {
    prepare(spec)?;
    let ids = resolve_ids(spec)?;
    let (reader, writer) = std::io::pipe().map_err(SpawnError::Pipe)?;
    let flags = nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_GETFL)?;
    nix::fcntl::fcntl(
        &reader,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )?;
    let mut cmd = Command::new(&spec.command);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer.try_clone().map_err(SpawnError::Pipe)?))
        .stderr(Stdio::from(writer));
    if let Some((_, home, uname)) = &ids
        && !uname.is_empty()
    {
        cmd.env("HOME", home)
            .env("USER", uname)
            .env("LOGNAME", uname);
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    if let Some(c) = &spec.cwd {
        cmd.current_dir(c);
    }
    let rlimits = spec.limits.rlimits.clone();
    let umask = spec
        .umask
        .map(|m| nix::sys::stat::Mode::from_bits_truncate(m as nix::libc::mode_t));
    let cg_fd: Option<RawFd> = cgroup_procs.map(|f| f.as_raw_fd());
    let ids = ids.map(|(i, _, _)| i);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (setsid, umask, setrlimit, write, setgroups, setgid, setuid,
    // sigprocmask) on data prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if let Some(m) = umask {
                nix::sys::stat::umask(m);
            }
            for (res, v) in &rlimits {
                if nix::sys::resource::setrlimit(*res, *v, *v).is_err() {
                    // Raising above the hard limit needs CAP_SYS_RESOURCE: clamp to it.
                    let (_, hard) =
                        nix::sys::resource::getrlimit(*res).map_err(std::io::Error::from)?;
                    nix::sys::resource::setrlimit(*res, (*v).min(hard), hard)
                        .map_err(std::io::Error::from)?;
                }
            }
            if let Some(fd) = cg_fd {
                // "0" moves the writing process into the cgroup.
                if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(ids) = &ids {
                if Uid::effective().is_root() {
                    nix::unistd::setgroups(&ids.groups).map_err(std::io::Error::from)?;
                }
                nix::unistd::setgid(ids.gid).map_err(std::io::Error::from)?;
                nix::unistd::setuid(ids.uid).map_err(std::io::Error::from)?;
            }
            let empty = nix::sys::signal::SigSet::empty();
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&empty),
                None,
            )
            .map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|err| SpawnError::Exec {
        command: match effective_user(spec) {
            // The usual cause: a parent directory of the binary (a checkout under /root, say)
            // is not searchable by the service's user.
            Some(u) if err.kind() == std::io::ErrorKind::PermissionDenied => format!(
                "{} (as user {u}: every parent directory must be searchable by {u})",
                spec.command
            ),
            _ => spec.command.clone(),
        },
        err,
    })?;
    let pid = Pid::from_raw(child.id() as i32);
    // The child is reaped by the supervisor's single waitpid(-1) loop, never through `child`.
    drop(child);
    Ok(Spawned {
        pid,
        output: reader,
    })
}
