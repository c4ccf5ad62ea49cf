//! Least privilege: Unix users created on demand for services, ownership and modes of the state
//! dir and of each service's directories and seeded files, and per-display Xauthority cookies.
//!
//! Only a supervisor running as root switches users; as an ordinary user every service runs as
//! that user and these steps only create files and directories (no chown).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
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
    #[error("{path} is not inside {base} (refused)")]
    Outside { path: String, base: String },
    #[error("{0} is a symbolic link (refused: it would lead outside the state dir)")]
    Symlink(String),
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
    // One useradd at a time among zigral-inits on this machine (tests run several at once):
    // concurrent useradds were seen to lose each other's entries (two users, one uid). The
    // lock is released when the file is closed, on every return below.
    let _serial = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open("/run/zigral-init-useradd.lock")
        .and_then(|f| f.lock().map(|()| f))
        .map_err(|e| PrivilegeError::CreateUser {
            name: name.to_owned(),
            reason: format!("cannot take the user-creation lock: {e}"),
        })?;
    // Another zigral-init may have created it while this one waited.
    if let Some(u) = User::from_name(name)? {
        return Ok(u);
    }
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

/// What [`chown_tree`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChownReport {
    /// Entries whose owner or group changed.
    pub changed: u64,
    /// Regular files with more than one hard link, left alone (a link to someone else's file
    /// must not change hands).
    pub skipped_links: Vec<PathBuf>,
}

/// `chown -R` that never leaves `path`: it walks directory descriptors opened with
/// `O_NOFOLLOW`, changes entries with `AT_SYMLINK_NOFOLLOW` (a symlink itself changes hands,
/// never its target; a symlinked directory is not entered) and skips regular files with more
/// than one hard link. A symlink `path` changes hands itself and is not followed.
pub fn chown_tree(path: &Path, owner: Owner) -> Result<ChownReport, PrivilegeError> {
    use nix::fcntl::OFlag;
    let meta = std::fs::symlink_metadata(path).map_err(io("reading", path))?;
    let mut report = ChownReport::default();
    if !meta.is_dir() {
        if meta.is_file() && std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
            report.skipped_links.push(path.to_path_buf());
        } else {
            chown(path, owner)?;
            report.changed += 1;
        }
        return Ok(report);
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let dir = nix::dir::Dir::open(path, flags, nix::sys::stat::Mode::empty())
        .map_err(|e| io("opening", path)(e.into()))?;
    let st = nix::sys::stat::fstat(&dir).map_err(|e| io("reading", path)(e.into()))?;
    if st.st_uid != owner.uid.as_raw() || st.st_gid != owner.gid.as_raw() {
        nix::unistd::fchown(&dir, Some(owner.uid), Some(owner.gid))
            .map_err(|e| io("chown", path)(e.into()))?;
        report.changed += 1;
    }
    chown_dir_contents(dir, path, owner, &mut report)?;
    Ok(report)
}

/// Hands every entry of the open directory `dir` (shown as `shown` in messages) and below to
/// `owner` without following symlinks.
fn chown_dir_contents(
    mut dir: nix::dir::Dir,
    shown: &Path,
    owner: Owner,
    report: &mut ChownReport,
) -> Result<(), PrivilegeError> {
    use nix::fcntl::{AtFlags, OFlag};
    use nix::sys::stat::SFlag;
    let fail = |what: &'static str, p: &Path, e: nix::Error| io(what, p)(e.into());
    let mut names: Vec<std::ffi::CString> = Vec::new();
    for e in dir.iter() {
        let e = e.map_err(|e| fail("listing", shown, e))?;
        let n = e.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            names.push(n.to_owned());
        }
    }
    for name in names {
        let shown_child = shown.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let st = match nix::sys::stat::fstatat(&dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        {
            Ok(st) => st,
            // Gone since the listing (the directory's old owner has no process left, so only
            // we change it; still, a missing entry is nothing to hand over).
            Err(nix::Error::ENOENT) => continue,
            Err(e) => return Err(fail("reading", &shown_child, e)),
        };
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFREG && st.st_nlink > 1 {
            tracing::warn!(
                "{}: {} hard links, left to its owner (uid {})",
                shown_child.display(),
                st.st_nlink,
                st.st_uid
            );
            report.skipped_links.push(shown_child);
            continue;
        }
        if st.st_uid != owner.uid.as_raw() || st.st_gid != owner.gid.as_raw() {
            nix::unistd::fchownat(
                &dir,
                name.as_c_str(),
                Some(owner.uid),
                Some(owner.gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| fail("chown", &shown_child, e))?;
            report.changed += 1;
        }
        if kind == SFlag::S_IFDIR {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            match nix::dir::Dir::openat(&dir, name.as_c_str(), flags, nix::sys::stat::Mode::empty())
            {
                Ok(sub) => chown_dir_contents(sub, &shown_child, owner, report)?,
                // Replaced by a symlink or removed since the fstatat: not entered.
                Err(nix::Error::ELOOP | nix::Error::ENOTDIR | nix::Error::ENOENT) => {}
                Err(e) => return Err(fail("opening", &shown_child, e)),
            }
        }
    }
    Ok(())
}

/// Creates `path` and missing parents. `path` gets mode `mode` (before the umask); parents
/// created on the way get 0711 (others may pass through, list nothing). Returns the
/// directories it created, outermost first, so the caller can give them an owner.
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
        let m = if d == path { mode } else { 0o711 };
        match std::fs::DirBuilder::new().mode(m).create(&d) {
            Ok(()) => made.push(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("creating", &d)(e)),
        }
    }
    Ok(made)
}

/// Makes directory `path` (and parents, mode 0711, kept by the supervisor's user). With `owner`
/// (root only): `path` gets that owner, and an existing directory owned by someone else is
/// handed over with everything in it ([`chown_tree`]); with `recursive`, its contents are
/// handed over at every call, whoever owns the directory itself. `mode` is applied to `path`
/// itself every time. `path` must not be a symlink when an owner is applied.
pub fn make_dir(
    path: &Path,
    mode: Option<u32>,
    owner: Option<Owner>,
    recursive: bool,
) -> Result<(), PrivilegeError> {
    let made = create_dirs(path, mode.unwrap_or(0o755) & 0o777)?;
    let is_link = |p: &Path| {
        std::fs::symlink_metadata(p)
            .map(|m| m.file_type().is_symlink())
            .map_err(io("reading", p))
    };
    if let Some(o) = owner.filter(|_| is_root()) {
        if is_link(path)? {
            return Err(PrivilegeError::Symlink(path.display().to_string()));
        }
        if made.iter().any(|d| d == path) {
            chown(path, o)?;
        } else if recursive || meta_owner(path) != Some((o.uid.as_raw(), o.gid.as_raw())) {
            let r = chown_tree(path, o)?;
            if r.changed > 0 || !r.skipped_links.is_empty() {
                tracing::info!(
                    "{}: handed to uid {} gid {} ({} entries changed, {} multiply-linked files skipped)",
                    path.display(),
                    o.uid,
                    o.gid,
                    r.changed,
                    r.skipped_links.len()
                );
            }
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

/// Refuses a path on which an ordinary user could have planted a symlink: a component that is
/// a symlink inside a directory that is not root's, or that others may write to (`/tmp`).
/// Root writing through such a link (a profile's `Default` pointing at `/etc`) would leave
/// the directory it means to write in.
fn check_no_planted_symlink(path: &Path) -> Result<(), PrivilegeError> {
    use std::os::unix::fs::MetadataExt;
    let abs = std::path::absolute(path).map_err(io("resolving", path))?;
    let mut cur = abs.as_path();
    while let Some(parent) = cur.parent() {
        if let Ok(m) = std::fs::symlink_metadata(cur)
            && m.file_type().is_symlink()
        {
            let p = std::fs::metadata(parent).map_err(io("reading", parent))?;
            if p.uid() != 0 || p.mode() & 0o022 != 0 {
                return Err(PrivilegeError::Symlink(cur.display().to_string()));
            }
        }
        cur = parent;
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
    if is_root() {
        check_no_planted_symlink(dir)?;
    }
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

/// Deletes `rel` (a relative path without `.`/`..`) under `base` with everything in it, never
/// outside `base`: the path's parent must resolve inside `base` (a symlinked directory on the
/// way that leads elsewhere is refused), and a symlink at `rel` is removed itself, not its
/// target. Returns false when there was nothing to delete.
pub fn remove_inside(base: &Path, rel: &Path) -> Result<bool, PrivilegeError> {
    use std::path::Component;
    let outside = || PrivilegeError::Outside {
        path: rel.display().to_string(),
        base: base.display().to_string(),
    };
    if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(outside());
    }
    let full = base.join(rel);
    let meta = match std::fs::symlink_metadata(&full) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io("reading", &full)(e)),
    };
    let (Some(parent), Some(name)) = (full.parent(), full.file_name()) else {
        return Err(outside());
    };
    let canon_base = base.canonicalize().map_err(io("resolving", base))?;
    let canon_parent = parent.canonicalize().map_err(io("resolving", parent))?;
    if !canon_parent.starts_with(&canon_base) {
        return Err(outside());
    }
    let target = canon_parent.join(name);
    if meta.is_dir() {
        std::fs::remove_dir_all(&target).map_err(io("deleting", &target))?;
    } else {
        std::fs::remove_file(&target).map_err(io("deleting", &target))?;
    }
    Ok(true)
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
        make_dir(&d, Some(0o2750), None, false).unwrap();
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

    fn owner_of(p: &Path) -> (u32, u32) {
        meta_owner(p).unwrap()
    }

    /// A profile that changes hands: everything inside goes to the new owner, except what
    /// would lead outside it (symlink targets, a symlinked directory's contents) and files
    /// with several hard links. Needs root (chown).
    #[test]
    fn recursive_make_dir_hands_over_without_leaving_the_dir() {
        assert!(
            is_root(),
            "this test changes owners (chown): run it as root (make test does)"
        );
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("secret"), "x").unwrap();
        std::fs::write(outside.join("sub/f"), "x").unwrap();
        let prof = t.path().join("profiles/u1/chrome");
        // The first owner (uid/gid 4242) made the profile.
        let first = Owner {
            uid: Uid::from_raw(4242),
            gid: Gid::from_raw(4242),
        };
        make_dir(&prof, Some(0o700), Some(first), true).unwrap();
        // Parents made on the way stay root's and can be passed through by the next owner.
        let parent = t.path().join("profiles/u1");
        assert_eq!(owner_of(&parent), (0, 0));
        assert_eq!(
            std::fs::metadata(&parent).unwrap().permissions().mode() & 0o7777,
            0o711
        );
        assert_eq!(owner_of(&prof), (4242, 4242));
        std::fs::create_dir_all(prof.join("Default/Cache")).unwrap();
        std::fs::write(prof.join("Default/Cookies"), "c").unwrap();
        std::fs::write(prof.join("Default/Cache/data_0"), "d").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), prof.join("Default/link")).unwrap();
        std::os::unix::fs::symlink(&outside, prof.join("Default/dirlink")).unwrap();
        std::fs::hard_link(outside.join("secret"), prof.join("Default/hard")).unwrap();
        chown_tree(&prof.join("Default/Cookies"), first).unwrap();

        // The next desktop user takes it over.
        let next = Owner {
            uid: Uid::from_raw(4343),
            gid: Gid::from_raw(4344),
        };
        make_dir(&prof, Some(0o700), Some(next), true).unwrap();
        for p in [
            "",
            "Default",
            "Default/Cache",
            "Default/Cache/data_0",
            "Default/Cookies",
            "Default/link",
            "Default/dirlink",
        ] {
            assert_eq!(owner_of(&prof.join(p)), (4343, 4344), "{p}");
        }
        // Symlink targets, the symlinked dir's contents and the multiply-linked file did not
        // change hands.
        for p in ["secret", "sub", "sub/f", ""] {
            assert_eq!(owner_of(&outside.join(p)), (0, 0), "outside/{p}");
        }
        assert_eq!(owner_of(&prof.join("Default/hard")), (0, 0));
        // Without `recursive`, a directory already owned right is left as it is inside.
        chown(&prof.join("Default/Cookies"), first).unwrap();
        make_dir(&prof, Some(0o700), Some(next), false).unwrap();
        assert_eq!(owner_of(&prof.join("Default/Cookies")), (4242, 4242));
        make_dir(&prof, Some(0o700), Some(next), true).unwrap();
        assert_eq!(owner_of(&prof.join("Default/Cookies")), (4343, 4344));
        // Seeding a file through a symlinked directory inside the profile is refused.
        let e = write_file(
            &prof.join("Default/dirlink/planted"),
            b"x",
            0o644,
            Some(next),
        )
        .unwrap_err();
        assert!(matches!(e, PrivilegeError::Symlink(_)), "{e}");
        assert!(!outside.join("planted").exists());
        write_file(&prof.join("Default/Preferences"), b"{}", 0o644, Some(next)).unwrap();
        assert_eq!(owner_of(&prof.join("Default/Preferences")), (4343, 4344));
        // A symlink where the directory should be is refused.
        let fake = t.path().join("profiles/u2");
        std::os::unix::fs::symlink(&outside, &fake).unwrap();
        let e = make_dir(&fake, Some(0o700), Some(next), true).unwrap_err();
        assert!(matches!(e, PrivilegeError::Symlink(_)), "{e}");
        assert_eq!(owner_of(&outside), (0, 0));
    }

    #[test]
    fn remove_inside_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("state");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(base.join("desktops/3/chrome")).unwrap();
        std::fs::create_dir_all(outside.join("keep")).unwrap();
        std::fs::write(base.join("desktops/3/chrome/f"), "x").unwrap();
        // A symlink at the purged path goes, its target stays.
        std::os::unix::fs::symlink(&outside, base.join("desktops/4")).unwrap();
        assert!(remove_inside(&base, Path::new("desktops/4")).unwrap());
        assert!(outside.join("keep").is_dir());
        assert!(std::fs::symlink_metadata(base.join("desktops/4")).is_err());
        // A path through a symlinked directory that leads outside is refused.
        std::os::unix::fs::symlink(&outside, base.join("esc")).unwrap();
        let e = remove_inside(&base, Path::new("esc/keep")).unwrap_err();
        assert!(matches!(e, PrivilegeError::Outside { .. }), "{e}");
        assert!(outside.join("keep").is_dir());
        for bad in ["", "../outside", "/etc", "desktops/../x", "."] {
            assert!(
                remove_inside(&base, Path::new(bad)).is_err(),
                "{bad:?} accepted"
            );
        }
        // The real thing, and then nothing left to delete.
        assert!(remove_inside(&base, Path::new("desktops/3")).unwrap());
        assert!(!base.join("desktops/3").exists());
        assert!(base.join("desktops").is_dir());
        assert!(!remove_inside(&base, Path::new("desktops/3")).unwrap());
    }
}
