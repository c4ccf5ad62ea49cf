//! Least privilege: Unix users created on demand for services, ownership and modes of the state
//! dir and of each service's directories and seeded files, and per-display Xauthority cookies.
//!
//! Only a supervisor running as root switches users; as an ordinary user every service runs as
//! that user and these steps only create files and directories (no chown).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::unistd::{Gid, Group, Uid, User};

/// Why a user, directory or file could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("{what} {path}: {err}")]
    Io {
        what: &'static str,
        path: String,
        err: std::io::Error,
    },
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    #[error("cannot create user {name:?}: {reason}")]
    CreateUser { name: String, reason: String },
    #[error(
        "the state dir {dir} is out of reach of the service users: {parent} has mode {mode:o} \
         (others need x); use a state dir under /var/lib or /tmp, or run as an ordinary user"
    )]
    Unreachable {
        dir: String,
        parent: String,
        mode: u32,
    },
    #[error("{0}")]
    Sys(#[from] nix::Error),
}

fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PrivilegeError + 'a {
    move |err| PrivilegeError::Io {
        what,
        path: path.display().to_string(),
        err,
    }
}

/// True when this process may switch users and change ownership.
pub fn is_root() -> bool {
    Uid::effective().is_root()
}

/// Looks up `name`.
pub fn user(name: &str) -> Result<User, PrivilegeError> {
    User::from_name(name)?.ok_or_else(|| PrivilegeError::UnknownUser(name.to_owned()))
}

/// Looks up group `name`.
pub fn group(name: &str) -> Result<Group, PrivilegeError> {
    Group::from_name(name)?.ok_or_else(|| PrivilegeError::UnknownGroup(name.to_owned()))
}

/// Returns user `name`, creating it first when missing: a system user with its own group, no
/// login shell, no password and `home` as its (not created) home directory. Another process
/// creating the same user at the same time is not an error.
pub fn ensure_user(name: &str, home: &Path) -> Result<User, PrivilegeError> {
    if let Some(u) = User::from_name(name)? {
        return Ok(u);
    }
    if !is_root() {
        return Err(PrivilegeError::CreateUser {
            name: name.to_owned(),
            reason: "only root can create users".into(),
        });
    }
    let shell = ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/bin/false");
    let mut last = String::new();
    // useradd takes a lock on /etc/passwd; a concurrent useradd makes it fail with exit 1
    // ("cannot lock"): retry a few times, then report what it said.
    for attempt in 0..40u32 {
        let out = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home", "--home-dir"])
            .arg(home)
            .args(["--shell", shell, "--comment", "zigral service user", name])
            .output()
            .map_err(|e| PrivilegeError::CreateUser {
                name: name.to_owned(),
                reason: format!("cannot run useradd: {e}"),
            })?;
        if let Some(u) = User::from_name(name)? {
            tracing::info!(user = name, uid = u.uid.as_raw(), "created service user");
            return Ok(u);
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25 * u64::from(attempt.min(8) + 1)));
    }
    Err(PrivilegeError::CreateUser {
        name: name.to_owned(),
        reason: if last.is_empty() {
            "useradd failed".into()
        } else {
            last
        },
    })
}

/// Fails when a parent directory of `dir` is not searchable by other users: the service users
/// could then not reach their own directories in it (a state dir under `/root`, say).
pub fn check_reachable(dir: &Path) -> Result<(), PrivilegeError> {
    let abs = std::path::absolute(dir).map_err(io("resolving", dir))?;
    for a in abs.ancestors().skip(1) {
        let m = std::fs::metadata(a).map_err(io("reading", a))?;
        if m.permissions().mode() & 0o001 == 0 {
            return Err(PrivilegeError::Unreachable {
                dir: abs.display().to_string(),
                parent: a.display().to_string(),
                mode: m.permissions().mode() & 0o7777,
            });
        }
    }
    Ok(())
}

/// Owner and group a path should get (root only applies them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: Uid,
    pub gid: Gid,
}

impl Owner {
    /// Owner `user` with `group` (or the user's primary group).
    pub fn resolve(user_name: &str, group_name: Option<&str>) -> Result<Owner, PrivilegeError> {
        let u = user(user_name)?;
        let gid = match group_name {
            Some(g) => group(g)?.gid,
            None => u.gid,
        };
        Ok(Owner { uid: u.uid, gid })
    }
}

fn meta_owner(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.uid(), m.gid()))
}

/// Changes the owner of `path` (not following symlinks).
pub fn chown(path: &Path, owner: Owner) -> Result<(), PrivilegeError> {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(owner.uid),
        Some(owner.gid),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| PrivilegeError::Io {
        what: "chown",
        path: path.display().to_string(),
        err: e.into(),
    })
}

/// `chown -R` without following symlinks (used once when a directory changes hands, e.g. a
/// profile made by an older version that ran everything as root).
pub fn chown_tree(path: &Path, owner: Owner) -> Result<(), PrivilegeError> {
    chown(path, owner)?;
    let meta = std::fs::symlink_metadata(path).map_err(io("reading", path))?;
    if meta.is_dir() {
        for e in std::fs::read_dir(path).map_err(io("listing", path))? {
            let e = e.map_err(io("listing", path))?;
            chown_tree(&e.path(), owner)?;
        }
    }
    Ok(())
}

/// Creates `path` and missing parents (mode `mode`, before the umask). Returns the directories
/// it created, outermost first, so the caller can give them an owner.
fn create_dirs(path: &Path, mode: u32) -> Result<Vec<PathBuf>, PrivilegeError> {
    let mut missing = Vec::new();
    let mut p = Some(path);
    while let Some(d) = p {
        if d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        p = d.parent();
    }
    missing.reverse();
    let mut made = Vec::new();
    for d in missing {
        match std::fs::DirBuilder::new().mode(mode).create(&d) {
            Ok(()) => made.push(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("creating", &d)(e)),
        }
    }
    Ok(made)
}

/// Makes directory `path` (and parents). With `owner` (root only): the directory and the parents
/// created here get that owner, and an existing directory owned by someone else is handed over
/// with everything in it. `mode` is applied to `path` itself every time.
pub fn make_dir(
    path: &Path,
    mode: Option<u32>,
    owner: Option<Owner>,
) -> Result<(), PrivilegeError> {
    let made = create_dirs(path, mode.unwrap_or(0o755) & 0o777)?;
    if let Some(o) = owner.filter(|_| is_root()) {
        if made.iter().any(|d| d == path) {
            for d in &made {
                chown(d, o)?;
            }
        } else if meta_owner(path) != Some((o.uid.as_raw(), o.gid.as_raw())) {
            for d in &made {
                chown(d, o)?;
            }
            chown_tree(path, o)?;
        }
    }
    if let Some(m) = mode {
        let now = std::fs::metadata(path).map_err(io("reading", path))?;
        // Only when it differs: a shared directory such as /tmp/.X11-unix is not ours to chmod
        // when the supervisor is not root.
        if now.permissions().mode() & 0o7777 != m {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(m))
                .map_err(io("chmod", path))?;
        }
    }
    Ok(())
}

/// Writes `data` to `path` atomically (temp file + rename) with `mode` and `owner`; missing
/// parents are created with the same owner.
pub fn write_file(
    path: &Path,
    data: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> Result<(), PrivilegeError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let owner = owner.filter(|_| is_root());
    for d in create_dirs(dir, 0o755)? {
        if let Some(o) = owner {
            chown(&d, o)?;
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io("creating", &tmp))?;
    f.write_all(data).map_err(io("writing", &tmp))?;
    drop(f);
    // The mode given to open() is masked by the umask: set it exactly.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(io("chmod", &tmp))?;
    if let Some(o) = owner {
        chown(&tmp, o)?;
    }
    std::fs::rename(&tmp, path).map_err(io("renaming into", path))?;
    Ok(())
}

/// FamilyWild: the entry matches any host address.
const FAMILY_WILD: u16 = 0xffff;
const MIT_COOKIE: &[u8] = b"MIT-MAGIC-COOKIE-1";

/// An Xauthority file holding one fresh MIT-MAGIC-COOKIE-1 for `display` (any host).
pub fn xauthority(display: u32) -> Result<Vec<u8>, PrivilegeError> {
    let mut cookie = [0u8; 16];
    let mut f =
        std::fs::File::open("/dev/urandom").map_err(io("opening", Path::new("/dev/urandom")))?;
    std::io::Read::read_exact(&mut f, &mut cookie)
        .map_err(io("reading", Path::new("/dev/urandom")))?;
    let number = display.to_string();
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&FAMILY_WILD.to_be_bytes());
    for field in [&b""[..], number.as_bytes(), MIT_COOKIE, &cookie[..]] {
        // Every field is short (< 64 bytes).
        out.extend_from_slice(&(field.len() as u16).to_be_bytes());
        out.extend_from_slice(field);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xauthority_layout() {
        let a = xauthority(7).unwrap();
        assert_eq!(&a[..2], &[0xff, 0xff]);
        assert_eq!(&a[2..4], &[0, 0]); // empty address
        assert_eq!(&a[4..7], &[0, 1, b'7']);
        assert_eq!(&a[7..9], &[0, 18]);
        assert_eq!(&a[9..27], MIT_COOKIE);
        assert_eq!(&a[27..29], &[0, 16]);
        assert_eq!(a.len(), 29 + 16);
        assert_ne!(
            xauthority(7).unwrap()[29..],
            a[29..],
            "a fresh cookie every time"
        );
    }

    #[test]
    fn make_dir_sets_mode_and_write_file_is_exact() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        make_dir(&d, Some(0o2750), None).unwrap();
        let m = std::fs::metadata(&d).unwrap().permissions().mode() & 0o7777;
        assert_eq!(m, 0o2750);
        let f = d.join("x/f");
        write_file(&f, b"hi", 0o640, None).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"hi");
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }
}
