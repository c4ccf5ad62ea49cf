//! Starting one service process: seeded files and directories, its own session and process
//! group, rlimits, cgroup membership, user/group switch, stdout/stderr into a log pipe.

use std::ffi::CString;
use std::io::PipeReader;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Pid, Uid};

use crate::config::ServiceSpec;

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
    #[error("preparing {path}: {err}")]
    Prepare { path: String, err: std::io::Error },
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

fn resolve_ids(spec: &ServiceSpec) -> Result<Option<(Ids, String, String)>, SpawnError> {
    let Some(uname) = &spec.user else {
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
        .ok_or_else(|| SpawnError::UnknownUser(uname.clone()))?;
    let gid = match &spec.group_name {
        Some(g) => {
            nix::unistd::Group::from_name(g)?
                .ok_or_else(|| SpawnError::UnknownGroup(g.clone()))?
                .gid
        }
        None => user.gid,
    };
    let cname = CString::new(uname.as_str()).map_err(|_| SpawnError::UnknownUser(uname.clone()))?;
    let groups = nix::unistd::getgrouplist(&cname, gid).unwrap_or_else(|_| vec![gid]);
    Ok(Some((
        Ids {
            uid: user.uid,
            gid,
            groups,
        },
        user.dir.display().to_string(),
        uname.clone(),
    )))
}

/// Creates the service's directories and seeds its files (existing files are kept unless
/// `replace`).
pub fn prepare(spec: &ServiceSpec) -> Result<(), SpawnError> {
    for d in &spec.mkdir {
        std::fs::create_dir_all(d).map_err(|err| SpawnError::Prepare {
            path: d.display().to_string(),
            err,
        })?;
    }
    for (path, content, replace) in &spec.files {
        if path.exists() && !replace {
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|err| SpawnError::Prepare {
                path: dir.display().to_string(),
                err,
            })?;
        }
        std::fs::write(path, content).map_err(|err| SpawnError::Prepare {
            path: path.display().to_string(),
            err,
        })?;
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
    let cg_fd: Option<RawFd> = cgroup_procs.map(|f| f.as_raw_fd());
    let ids = ids.map(|(i, _, _)| i);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (setsid, setrlimit, write, setgroups, setgid, setuid,
    // sigprocmask) on data prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
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
        command: spec.command.clone(),
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
