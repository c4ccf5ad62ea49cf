//! Desktop access tokens: minted by the control plane, checked by the proxy without a call back.
//!
//! A token grants one role (`view` or `control`) on one desktop `N` until an expiry time. It is
//! `v1.<base64url(claims JSON)>.<base64url(HMAC-SHA256(key, "v1." + claims part))>`, signed with
//! a 32-byte key kept in the state directory (`proxy-signing.key`, mode 0600) that both
//! processes read. Verification is constant-time and checks version, signature, then expiry (and
//! that a `lease` claim, if any, is well-formed).
//!
//! # Leases
//!
//! Desktops are handed from user to user: the control plane destroys desktop N when one
//! session ends and may later create a new desktop N for someone else. A token may therefore
//! carry a *lease*, a short opaque string ([`is_valid_lease`]) naming one tenancy of its
//! desktop. The control plane records desktop N's current lease in `<state_dir>/leases/<N>`
//! ([`write_lease`] when it hands the desktop out, `None` when it destroys it); the proxy
//! reads that file ([`read_lease`]) on every connection attempt and accepts a token only when
//! its lease equals the file's content, both absent included (a desktop nobody leased). Tokens
//! minted before leases existed have no `lease` claim and verify as before.
//!
//! # Control
//!
//! A person may take control of a desktop (the control plane's control lease): while they hold
//! it, only their own connections may send input; everyone else's control connection is
//! demoted to view-only. A token minted for a person's login carries a `control` claim, the
//! login's *control id* (an opaque string of the same form as a lease). The control plane
//! records who holds desktop N in `<state_dir>/control/<N>` ([`ControlFiles::write`]: the
//! holder's control id, atomically; removed when nobody holds it). The proxy watches that
//! file ([`ControlFiles::read`]) and lets a `control` token send input only when the file is
//! absent or equals the token's `control` claim.
//!
//! # Live view
//!
//! An owner or an administrator may turn a desktop's live view off: the proxy then refuses
//! new viewers of it (403 `live_view_off`) and closes the live ones. The control plane marks
//! desktop N's live view off with the file `<state_dir>/liveview/<N>` ([`LiveViewFiles`]:
//! present means off, absent means on; written atomically, 0600 in a 0700 directory) and
//! removes it when the desktop is handed to a new owner or destroyed. The proxy reads it on
//! every connection attempt and polls it for desktops with live connections
//! ([`LiveViewFiles::is_off`]; a file it cannot read counts as off).
//!
//! Time comes from a [`Clock`] held by the key: the system clock unless a test injects a
//! [`ManualClock`] (`SigningKey::with_clock`), so expiry is tested by moving that clock, not by
//! sleeping. [`SigningKey::mint_at`] and [`SigningKey::verify_at`] take the time explicitly.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// File name of the shared signing key inside the state directory.
pub const KEY_FILE: &str = "proxy-signing.key";
const KEY_LEN: usize = 32;
const PREFIX: &str = "v1.";
/// Longest token we accept, to keep parsing bounded.
pub const MAX_TOKEN_LEN: usize = 1024;
/// Directory of the lease files inside the state directory.
pub const LEASES_DIR: &str = "leases";
/// Longest lease, in bytes.
pub const MAX_LEASE_LEN: usize = 64;
/// Directory of the control files inside the state directory.
pub const CONTROL_DIR: &str = "control";
/// Directory of the live-view files inside the state directory.
pub const LIVE_VIEW_DIR: &str = "liveview";

/// What a token lets its holder do on the desktop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Watch only: the proxy drops keyboard, pointer and clipboard input.
    View,
    /// Watch and drive the desktop.
    Control,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::View => "view",
            Role::Control => "control",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "view" => Ok(Role::View),
            "control" => Ok(Role::Control),
            other => Err(TokenError::BadRole(other.to_owned())),
        }
    }
}

/// The signed content of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Desktop number N (display `:N`, VNC port base+N).
    pub desktop: u32,
    /// Granted role.
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Who it was minted for (user id), for audit and logs.
    pub sub: String,
    /// Random nonce so two tokens minted in the same second differ.
    pub nonce: String,
    /// The lease of the desktop this token was minted for (see the module docs); `None` for a
    /// desktop nobody leased. Absent from the JSON when `None`, so such tokens are exactly
    /// what was minted before leases existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// The control id of the login this token was minted for (see the module docs,
    /// "Control"): while someone holds control of the desktop, a `control` token sends input
    /// only if this equals the holder's control id. Absent for tokens not minted for a login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
}

/// What to mint: [`SigningKey::mint_grant`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant<'a> {
    /// Desktop number N.
    pub desktop: u32,
    pub role: Role,
    /// Who it is minted for (user id).
    pub sub: &'a str,
    /// Lifetime from now (the key's clock), seconds.
    pub ttl_secs: u64,
    /// The desktop's current lease (`None`: nobody leased it).
    pub lease: Option<&'a str>,
    /// The control id of the login it is minted for (`None`: not a login).
    pub control: Option<&'a str>,
}

/// Why a token or key was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token is too long")]
    TooLong,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("unknown role '{0}' (expected view or control)")]
    BadRole(String),
    #[error("signing key {path}: {source}")]
    KeyIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("signing key {path} has {len} bytes, expected {KEY_LEN}")]
    KeyLength { path: PathBuf, len: usize },
    #[error("invalid lease {0:?}: expected 1 to {MAX_LEASE_LEN} ASCII letters, digits or '-'")]
    BadLease(String),
    #[error("lease file {path}: {source}")]
    LeaseIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "lease file {path} does not hold one line of 1 to {MAX_LEASE_LEN} letters, digits or '-'"
    )]
    LeaseContent { path: PathBuf },
    #[error("invalid control id {0:?}: expected 1 to {MAX_LEASE_LEN} ASCII letters, digits or '-'")]
    BadControl(String),
    #[error("control file {path}: {source}")]
    ControlIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "control file {path} does not hold one line of 1 to {MAX_LEASE_LEN} letters, digits or '-'"
    )]
    ControlContent { path: PathBuf },
    #[error("live-view file {path}: {source}")]
    LiveViewIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The time tokens are minted and checked at, in seconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now_secs(&self) -> u64;

    /// Milliseconds since the Unix epoch (API-token and login expiry in the control plane).
    fn now_ms(&self) -> u64 {
        self.now_secs().saturating_mul(1000)
    }
}

/// The system's wall clock (the default of every [`SigningKey`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> u64 {
        now_secs()
    }

    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to; clones share the same time (tests).
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock reading `secs`.
    pub fn new(secs: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(secs)))
    }

    /// Sets the time to `secs`.
    pub fn set(&self, secs: u64) {
        self.0.store(secs, Ordering::SeqCst);
    }

    /// Moves the time forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_secs(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The HMAC key shared by the control plane and the proxy, with the clock it mints and checks
/// expiry against.
#[derive(Clone)]
pub struct SigningKey {
    bytes: [u8; KEY_LEN],
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// A key from raw bytes (tests, or keys provisioned elsewhere).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        SigningKey {
            bytes,
            clock: Arc::new(SystemClock),
        }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::fill(&mut k);
        Self::from_bytes(k)
    }

    /// The same key, minting and checking expiry against `clock` instead of the system clock.
    pub fn with_clock(self, clock: impl Clock + 'static) -> Self {
        SigningKey {
            bytes: self.bytes,
            clock: Arc::new(clock),
        }
    }

    /// The current time of this key's clock (seconds since the epoch).
    pub fn now_secs(&self) -> u64 {
        self.clock.now_secs()
    }

    /// The current time of this key's clock in milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Path of the key file in `state_dir`.
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join(KEY_FILE)
    }

    /// Reads the key from `state_dir`, creating it (0600, atomically) if it does not exist yet.
    /// Both the proxy and the control plane call this; whichever starts first creates it.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, TokenError> {
        let path = Self::path_in(state_dir);
        let io = |source| TokenError::KeyIo {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(state_dir).map_err(io)?;
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                let key = Self::generate();
                f.write_all(&key.bytes).map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(&path),
            Err(e) => Err(io(e)),
        }
    }

    /// Reads an existing key file; refuses files of the wrong length.
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let io = |source| TokenError::KeyIo {
            path: path.to_owned(),
            source,
        };
        // A concurrent creator may not have written the bytes yet: retry briefly.
        for attempt in 0..50 {
            let bytes = fs::read(path).map_err(io)?;
            if bytes.len() == KEY_LEN {
                let meta = fs::metadata(path).map_err(io)?;
                if meta.permissions().mode() & 0o077 != 0 {
                    let mut p = meta.permissions();
                    p.set_mode(0o600);
                    fs::set_permissions(path, p).map_err(io)?;
                }
                let mut k = [0u8; KEY_LEN];
                k.copy_from_slice(&bytes);
                return Ok(Self::from_bytes(k));
            }
            if !bytes.is_empty() || attempt == 49 {
                return Err(TokenError::KeyLength {
                    path: path.to_owned(),
                    len: bytes.len(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(TokenError::KeyLength {
            path: path.to_owned(),
            len: 0,
        })
    }

    fn mac(&self, signed_part: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.bytes).expect("HMAC takes any key length");
        mac.update(signed_part);
        mac
    }

    /// Signs claims into a token string.
    pub fn mint(&self, claims: &Claims) -> String {
        let json = serde_json::to_vec(claims).expect("claims serialize");
        let signed = format!("{PREFIX}{}", B64.encode(json));
        let sig = self.mac(signed.as_bytes()).finalize().into_bytes();
        format!("{signed}.{}", B64.encode(sig))
    }

    /// Mints a token for `desktop`/`role` valid for `ttl_secs` from now (this key's clock),
    /// without a lease.
    pub fn mint_for(&self, desktop: u32, role: Role, sub: &str, ttl_secs: u64) -> (String, Claims) {
        self.mint_at(desktop, role, sub, ttl_secs, self.clock.now_secs())
    }

    /// Mints a token for `desktop`/`role` valid for `ttl_secs` from now (this key's clock),
    /// bound to the desktop's `lease` (`None`: a desktop nobody leased). Refuses a lease that
    /// [`is_valid_lease`] rejects.
    pub fn mint_for_lease(
        &self,
        desktop: u32,
        role: Role,
        sub: &str,
        ttl_secs: u64,
        lease: Option<&str>,
    ) -> Result<(String, Claims), TokenError> {
        self.mint_grant(&Grant {
            desktop,
            role,
            sub,
            ttl_secs,
            lease,
            control: None,
        })
    }

    /// Mints a token for `grant`, valid for its `ttl_secs` from now (this key's clock).
    /// Refuses a lease or control id that [`is_valid_lease`] rejects.
    pub fn mint_grant(&self, grant: &Grant<'_>) -> Result<(String, Claims), TokenError> {
        if let Some(l) = grant.lease
            && !is_valid_lease(l)
        {
            return Err(TokenError::BadLease(l.to_owned()));
        }
        if let Some(c) = grant.control
            && !is_valid_lease(c)
        {
            return Err(TokenError::BadControl(c.to_owned()));
        }
        Ok(self.mint_claims(grant, self.clock.now_secs()))
    }

    /// Mints a token for `desktop`/`role` valid for `ttl_secs` from `now` (seconds since the
    /// epoch).
    pub fn mint_at(
        &self,
        desktop: u32,
        role: Role,
        sub: &str,
        ttl_secs: u64,
        now: u64,
    ) -> (String, Claims) {
        let grant = Grant {
            desktop,
            role,
            sub,
            ttl_secs,
            lease: None,
            control: None,
        };
        self.mint_claims(&grant, now)
    }

    fn mint_claims(&self, g: &Grant<'_>, now: u64) -> (String, Claims) {
        let mut n = [0u8; 9];
        rand::fill(&mut n);
        let claims = Claims {
            desktop: g.desktop,
            role: g.role,
            exp: now.saturating_add(g.ttl_secs),
            sub: g.sub.to_owned(),
            nonce: B64.encode(n),
            lease: g.lease.map(str::to_owned),
            control: g.control.map(str::to_owned),
        };
        (self.mint(&claims), claims)
    }

    /// Checks a token's signature and expiry at `now` (seconds since the epoch).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let (signed, sig_b64) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let payload_b64 = signed.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let sig = B64.decode(sig_b64).map_err(|_| TokenError::Malformed)?;
        self.mac(signed.as_bytes())
            .verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let json = B64.decode(payload_b64).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.lease.as_deref().is_some_and(|l| !is_valid_lease(l))
            || claims
                .control
                .as_deref()
                .is_some_and(|c| !is_valid_lease(c))
        {
            return Err(TokenError::Malformed);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// Checks a token against the current time of this key's clock.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, self.clock.now_secs())
    }
}

/// Whether `lease` can be a lease: 1 to [`MAX_LEASE_LEN`] ASCII letters, digits or `-`.
pub fn is_valid_lease(lease: &str) -> bool {
    (1..=MAX_LEASE_LEN).contains(&lease.len())
        && lease
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Path of desktop `desktop`'s lease file: `<state_dir>/leases/<desktop>`.
pub fn lease_path(state_dir: &Path, desktop: u32) -> PathBuf {
    Leases::in_state_dir(state_dir).path(desktop)
}

/// Desktop `desktop`'s current lease; `None` when it has no lease file. See [`Leases::read`].
pub fn read_lease(state_dir: &Path, desktop: u32) -> Result<Option<String>, TokenError> {
    Leases::in_state_dir(state_dir).read(desktop)
}

/// Records desktop `desktop`'s current lease, or removes it with `None`. See [`Leases::write`].
pub fn write_lease(state_dir: &Path, desktop: u32, lease: Option<&str>) -> Result<(), TokenError> {
    Leases::in_state_dir(state_dir).write(desktop, lease)
}

/// The lease files of one state directory (`<state_dir>/leases/<N>`, one line each): the
/// control plane writes them, the proxy reads them (module docs, "Leases").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leases {
    dir: PathBuf,
}

impl Leases {
    /// The lease files of `state_dir`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Leases {
            dir: state_dir.join(LEASES_DIR),
        }
    }

    /// The directory holding the lease files (`<state_dir>/leases`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of desktop `desktop`'s lease file.
    pub fn path(&self, desktop: u32) -> PathBuf {
        self.dir.join(desktop.to_string())
    }

    /// Desktop `desktop`'s current lease: `None` when its file (or the directory) does not
    /// exist. A file that cannot be read or does not hold one valid lease line is an error, so
    /// a caller deciding access can fail closed.
    pub fn read(&self, desktop: u32) -> Result<Option<String>, TokenError> {
        read_line(&self.path(desktop), FileKind::Lease)
    }

    /// Records desktop `desktop`'s current lease, atomically: a temporary file (mode 0600) in
    /// the leases directory, synced, then renamed over the lease file, so a reader sees the
    /// old lease or the new one, never a partial line. Creates the leases directory (mode
    /// 0700) when missing; the state directory itself must exist. `None` removes the lease
    /// file (already absent is fine).
    pub fn write(&self, desktop: u32, lease: Option<&str>) -> Result<(), TokenError> {
        write_line(&self.dir, desktop, lease, FileKind::Lease)
    }
}

/// The control files of one state directory (`<state_dir>/control/<N>`, one line each: the
/// control id of the login holding desktop N): the control plane writes them, the proxy
/// watches them (module docs, "Control").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFiles {
    dir: PathBuf,
}

impl ControlFiles {
    /// The control files of `state_dir`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        ControlFiles {
            dir: state_dir.join(CONTROL_DIR),
        }
    }

    /// The directory holding the control files (`<state_dir>/control`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of desktop `desktop`'s control file.
    pub fn path(&self, desktop: u32) -> PathBuf {
        self.dir.join(desktop.to_string())
    }

    /// The control id of whoever holds desktop `desktop`: `None` when nobody does (no file).
    /// A file that cannot be read or does not hold one valid line is an error (a caller
    /// deciding who may send input should then let nobody).
    pub fn read(&self, desktop: u32) -> Result<Option<String>, TokenError> {
        read_line(&self.path(desktop), FileKind::Control)
    }

    /// Records that the login with control id `holder` holds desktop `desktop`, or with
    /// `None` that nobody does; atomic like [`Leases::write`] (0600 file in a 0700 directory).
    pub fn write(&self, desktop: u32, holder: Option<&str>) -> Result<(), TokenError> {
        write_line(&self.dir, desktop, holder, FileKind::Control)
    }

    /// Removes every control file (nobody holds any desktop): the control plane keeps control
    /// leases in memory, so it clears what an earlier run left behind when it starts.
    pub fn clear(&self) -> Result<(), TokenError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TokenError::ControlIo { path, source }
        };
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        for e in entries {
            let path = e.map_err(io(&self.dir))?.path();
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
        sync_dir(&self.dir).map_err(io(&self.dir))
    }
}

/// The live-view files of one state directory (`<state_dir>/liveview/<N>`): present means
/// desktop N's live view is off, absent that it is on. The control plane writes them, the
/// proxy reads them (module docs, "Live view").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveViewFiles {
    dir: PathBuf,
}

/// What a live-view file holds (its content is not otherwise significant: presence is).
const LIVE_VIEW_OFF: &str = "off";

impl LiveViewFiles {
    /// The live-view files of `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        LiveViewFiles {
            dir: state_dir.join(LIVE_VIEW_DIR),
        }
    }

    /// The directory holding the live-view files (`<state_dir>/liveview`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of desktop `desktop`'s live-view file.
    pub fn path(&self, desktop: u32) -> PathBuf {
        self.dir.join(desktop.to_string())
    }

    /// Turns desktop `desktop`'s live view off (`true`: the file is written atomically like
    /// [`Leases::write`], 0600 in a 0700 directory made when missing) or on again (`false`:
    /// the file is removed; already absent is fine).
    pub fn set_off(&self, desktop: u32, off: bool) -> Result<(), TokenError> {
        write_line(
            &self.dir,
            desktop,
            off.then_some(LIVE_VIEW_OFF),
            FileKind::LiveView,
        )
    }

    /// Whether desktop `desktop`'s live view is off: `false` when its file (or the directory)
    /// does not exist, `true` when the file exists, whatever it holds. A file that exists but
    /// cannot be read (a directory in its place, an I/O error) is an error, so a caller
    /// deciding access can fail closed.
    pub fn is_off(&self, desktop: u32) -> Result<bool, TokenError> {
        use std::io::Read;
        let path = self.path(desktop);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(FileKind::LiveView.io(&path)(e)),
        };
        let mut buf = [0u8; 8];
        file.take(buf.len() as u64)
            .read(&mut buf)
            .map_err(FileKind::LiveView.io(&path))?;
        Ok(true)
    }
}

/// Which kind of one-line file an error concerns.
#[derive(Debug, Clone, Copy)]
enum FileKind {
    Lease,
    Control,
    LiveView,
}

impl FileKind {
    fn io(self, path: &Path) -> impl FnOnce(std::io::Error) -> TokenError + use<> {
        let path = path.to_owned();
        move |source| match self {
            FileKind::Lease => TokenError::LeaseIo { path, source },
            FileKind::Control => TokenError::ControlIo { path, source },
            FileKind::LiveView => TokenError::LiveViewIo { path, source },
        }
    }

    fn content(self, path: PathBuf) -> TokenError {
        match self {
            FileKind::Lease => TokenError::LeaseContent { path },
            FileKind::Control => TokenError::ControlContent { path },
            // Live-view files are never parsed; keep the error typed all the same.
            FileKind::LiveView => TokenError::LiveViewIo {
                path,
                source: std::io::ErrorKind::InvalidData.into(),
            },
        }
    }

    fn bad_value(self, v: &str) -> TokenError {
        match self {
            FileKind::Lease => TokenError::BadLease(v.to_owned()),
            FileKind::Control => TokenError::BadControl(v.to_owned()),
            // Only ever asked for the constant `off`, which is valid.
            FileKind::LiveView => TokenError::LiveViewIo {
                path: PathBuf::from(v),
                source: std::io::ErrorKind::InvalidInput.into(),
            },
        }
    }
}

/// Reads a one-line file holding a value [`is_valid_lease`] accepts: `None` when it does not
/// exist.
fn read_line(path: &Path, kind: FileKind) -> Result<Option<String>, TokenError> {
    use std::io::Read;
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(kind.io(path)(e)),
    };
    // The longest valid content is a full-length value and a newline; one byte more is
    // enough to tell a longer file apart.
    let mut buf = Vec::with_capacity(MAX_LEASE_LEN + 2);
    if let Err(e) = file.take(MAX_LEASE_LEN as u64 + 2).read_to_end(&mut buf) {
        return Err(kind.io(path)(e));
    }
    let line = std::str::from_utf8(&buf)
        .ok()
        .map(|t| t.strip_suffix('\n').unwrap_or(t))
        .filter(|l| is_valid_lease(l));
    match line {
        Some(l) => Ok(Some(l.to_owned())),
        None => Err(kind.content(path.to_owned())),
    }
}

/// Writes `<dir>/<n>` atomically (temporary 0600 file, synced, renamed over it; the directory
/// made 0700 when missing), or removes it with `None`.
fn write_line(dir: &Path, n: u32, value: Option<&str>, kind: FileKind) -> Result<(), TokenError> {
    let path = dir.join(n.to_string());
    let Some(value) = value else {
        match fs::remove_file(&path) {
            Ok(()) => return sync_dir(dir).map_err(kind.io(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(kind.io(&path)(e)),
        }
    };
    if !is_valid_lease(value) {
        return Err(kind.bad_value(value));
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        // Set the mode explicitly: the umask may have taken bits from it.
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(kind.io(dir))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(kind.io(dir)(e)),
    }
    let tmp = dir.join(format!(
        ".{n}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(format!("{value}\n").as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(kind.io(&path)(e));
    }
    sync_dir(dir).map_err(kind.io(dir))
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let k = SigningKey::generate();
        let (t, c) = k.mint_for(3, Role::View, "alice", 60);
        assert_eq!(k.verify(&t).unwrap(), c);
        // another key
        assert!(matches!(
            SigningKey::generate().verify(&t),
            Err(TokenError::BadSignature)
        ));
        // expired
        assert!(matches!(k.verify_at(&t, c.exp), Err(TokenError::Expired)));
        // tampered payload: swap desktop, keep signature
        let forged = k.mint(&Claims {
            desktop: 4,
            ..c.clone()
        });
        let (forged_payload, _) = forged.rsplit_once('.').unwrap();
        let (_, sig) = t.rsplit_once('.').unwrap();
        assert!(matches!(
            k.verify(&format!("{forged_payload}.{sig}")),
            Err(TokenError::BadSignature)
        ));
        assert!(matches!(k.verify("garbage"), Err(TokenError::Malformed)));
        assert!(matches!(
            k.verify(&"a".repeat(5000)),
            Err(TokenError::TooLong)
        ));
    }

    #[test]
    fn expiry_follows_the_injected_clock() {
        let clock = ManualClock::new(1_000_000);
        let k = SigningKey::generate().with_clock(clock.clone());
        let (t, c) = k.mint_for(0, Role::Control, "bob", 60);
        assert_eq!(c.exp, 1_000_060, "minted from the injected clock");
        assert_eq!(k.verify(&t).unwrap(), c);
        clock.advance(59);
        assert_eq!(k.verify(&t).unwrap(), c, "valid until the last second");
        clock.advance(1);
        assert!(matches!(k.verify(&t), Err(TokenError::Expired)));
        // The same key with the system clock: this token expired decades ago.
        let system = SigningKey::from_bytes(k.bytes);
        assert!(matches!(system.verify(&t), Err(TokenError::Expired)));
        let (t2, c2) = k.mint_at(1, Role::View, "bob", 10, 5);
        assert_eq!(c2.exp, 15);
        assert!(k.verify_at(&t2, 14).is_ok());
        assert!(matches!(k.verify_at(&t2, 15), Err(TokenError::Expired)));
    }

    #[test]
    fn key_file_is_created_once_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = SigningKey::load_or_create(dir.path()).unwrap();
        let b = SigningKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.bytes, b.bytes);
        let mode = fs::metadata(SigningKey::path_in(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(SigningKey::path_in(dir.path()), b"short").unwrap();
        assert!(matches!(
            SigningKey::load_or_create(dir.path()),
            Err(TokenError::KeyLength { len: 5, .. })
        ));
    }

    /// Signs raw claims JSON as a token, as any earlier or later minting code would have.
    fn sign_json(k: &SigningKey, json: &str) -> String {
        let signed = format!("{PREFIX}{}", B64.encode(json));
        let sig = k.mac(signed.as_bytes()).finalize().into_bytes();
        format!("{signed}.{}", B64.encode(sig))
    }

    fn claims_json(token: &str) -> serde_json::Value {
        let payload = token
            .strip_prefix(PREFIX)
            .and_then(|t| t.split('.').next())
            .expect("payload");
        serde_json::from_slice(&B64.decode(payload).expect("base64")).expect("json")
    }

    #[test]
    fn lease_round_trips_and_tokens_without_one_verify_as_before() {
        let k = SigningKey::generate();
        let (t, c) = k
            .mint_for_lease(5, Role::Control, "alice", 60, Some("lease-7"))
            .expect("mint");
        assert_eq!(c.lease.as_deref(), Some("lease-7"));
        assert_eq!(k.verify(&t).expect("verify"), c);
        assert_eq!(claims_json(&t)["lease"], "lease-7");

        // Without a lease the claims carry no `lease` key at all: the pre-lease format.
        let (t, c) = k.mint_for(5, Role::View, "alice", 60);
        assert_eq!(c.lease, None);
        assert!(
            claims_json(&t).get("lease").is_none(),
            "{}",
            claims_json(&t)
        );
        let (t2, c2) = k
            .mint_for_lease(5, Role::View, "alice", 60, None)
            .expect("mint");
        assert_eq!((c2.lease, claims_json(&t2).get("lease")), (None, None));
        assert_eq!(k.verify(&t).expect("verify").lease, None);

        // A token minted before leases existed still verifies, with no lease.
        let exp = now_secs() + 60;
        let old = sign_json(
            &k,
            &format!(r#"{{"desktop":2,"role":"view","exp":{exp},"sub":"bob","nonce":"n"}}"#),
        );
        let c = k.verify(&old).expect("old token");
        assert_eq!((c.desktop, c.lease), (2, None));

        // Unknown claims are still refused, and so is a signed but impossible lease.
        let extra = sign_json(
            &k,
            &format!(r#"{{"desktop":2,"role":"view","exp":{exp},"sub":"b","nonce":"n","x":1}}"#),
        );
        assert!(matches!(k.verify(&extra), Err(TokenError::Malformed)));
        let spaced = sign_json(
            &k,
            &format!(
                r#"{{"desktop":2,"role":"view","exp":{exp},"sub":"b","nonce":"n","lease":"a b"}}"#
            ),
        );
        assert!(matches!(k.verify(&spaced), Err(TokenError::Malformed)));

        for bad in ["", "a b", "a/b", "a\n", "é", &"x".repeat(MAX_LEASE_LEN + 1)] {
            assert!(!is_valid_lease(bad), "{bad:?}");
            assert!(
                matches!(
                    k.mint_for_lease(0, Role::View, "a", 60, Some(bad)),
                    Err(TokenError::BadLease(_))
                ),
                "{bad:?}"
            );
        }
        for good in ["a", "A-0", "0123-abcd", &"x".repeat(MAX_LEASE_LEN)] {
            assert!(is_valid_lease(good), "{good:?}");
        }
    }

    #[test]
    fn lease_files_are_0600_in_a_0700_dir_and_none_removes_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path();
        assert_eq!(read_lease(state, 3).expect("no leases dir"), None);
        assert_eq!(lease_path(state, 3), state.join("leases").join("3"));

        write_lease(state, 3, Some("a")).expect("write");
        assert_eq!(read_lease(state, 3).expect("read").as_deref(), Some("a"));
        assert_eq!(read_lease(state, 4).expect("other desktop"), None);
        assert_eq!(
            fs::read_to_string(lease_path(state, 3)).expect("raw"),
            "a\n"
        );
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&lease_path(state, 3)), 0o600);
        assert_eq!(mode(&state.join("leases")), 0o700);

        write_lease(state, 3, Some("b-2")).expect("overwrite");
        assert_eq!(read_lease(state, 3).expect("read").as_deref(), Some("b-2"));
        assert!(matches!(
            write_lease(state, 3, Some("no spaces")),
            Err(TokenError::BadLease(_))
        ));
        assert_eq!(
            read_lease(state, 3).expect("unchanged").as_deref(),
            Some("b-2")
        );

        write_lease(state, 3, None).expect("remove");
        assert!(!lease_path(state, 3).exists());
        assert_eq!(read_lease(state, 3).expect("removed"), None);
        write_lease(state, 3, None).expect("removing an absent lease is fine");
        // Only lease files remain: no temporary files left behind.
        let names: Vec<_> = fs::read_dir(state.join("leases"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn unreadable_or_garbled_lease_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path();
        write_lease(state, 0, Some("a")).expect("write");
        let path = lease_path(state, 0);
        for garbled in [
            "",
            "\n",
            "a b\n",
            "a\nb\n",
            &format!("{}\n", "x".repeat(65)),
        ] {
            fs::write(&path, garbled).expect("garble");
            assert!(
                matches!(read_lease(state, 0), Err(TokenError::LeaseContent { .. })),
                "{garbled:?}"
            );
        }
        fs::write(&path, "no-newline").expect("write");
        assert_eq!(
            read_lease(state, 0).expect("read").as_deref(),
            Some("no-newline")
        );
        fs::remove_file(&path).expect("rm");
        fs::create_dir(&path).expect("a directory where the file should be");
        let err = read_lease(state, 0).expect_err("directory");
        assert!(matches!(err, TokenError::LeaseIo { .. }), "{err}");
        assert!(err.to_string().contains("leases/0"), "{err}");
    }

    /// A reader racing a writer that keeps replacing the lease sees one whole lease or the
    /// other every time: never a missing file, an empty one or half a line.
    #[test]
    fn lease_writes_are_atomic_for_a_concurrent_reader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().to_owned();
        write_lease(&state, 1, Some("first-lease")).expect("write");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (state, done) = (state.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::SeqCst) {
                    let l = read_lease(&state, 1).expect("read during writes");
                    assert!(
                        matches!(l.as_deref(), Some("first-lease" | "second-lease-longer")),
                        "{l:?}"
                    );
                    reads += 1;
                }
                reads
            })
        };
        for i in 0..200 {
            let l = if i % 2 == 0 {
                "second-lease-longer"
            } else {
                "first-lease"
            };
            write_lease(&state, 1, Some(l)).expect("write");
        }
        done.store(true, Ordering::SeqCst);
        assert!(reader.join().expect("reader") > 0);
    }

    #[test]
    fn control_claim_round_trips_and_is_checked() {
        let k = SigningKey::generate();
        let (t, c) = k
            .mint_grant(&Grant {
                desktop: 2,
                role: Role::Control,
                sub: "alice",
                ttl_secs: 60,
                lease: Some("l-1"),
                control: Some("c0ffee"),
            })
            .expect("mint");
        assert_eq!(c.control.as_deref(), Some("c0ffee"));
        assert_eq!(k.verify(&t).expect("verify"), c);
        assert_eq!(claims_json(&t)["control"], "c0ffee");
        // No control id: no `control` key, the format tokens had before.
        let (t, _) = k
            .mint_for_lease(2, Role::Control, "alice", 60, None)
            .expect("mint");
        assert!(claims_json(&t).get("control").is_none());
        assert!(matches!(
            k.mint_grant(&Grant {
                desktop: 2,
                role: Role::View,
                sub: "a",
                ttl_secs: 60,
                lease: None,
                control: Some("not valid"),
            }),
            Err(TokenError::BadControl(_))
        ));
        let exp = now_secs() + 60;
        let spaced = sign_json(
            &k,
            &format!(
                r#"{{"desktop":2,"role":"view","exp":{exp},"sub":"b","nonce":"n","control":"a/b"}}"#
            ),
        );
        assert!(matches!(k.verify(&spaced), Err(TokenError::Malformed)));
    }

    #[test]
    fn control_files_round_trip_clear_and_report_their_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ControlFiles::in_state_dir(dir.path());
        assert_eq!(files.path(4), dir.path().join("control").join("4"));
        assert_eq!(files.read(4).expect("no dir yet"), None);
        files.clear().expect("clearing a missing dir is fine");
        files.write(4, Some("holder-1")).expect("write");
        files.write(5, Some("holder-2")).expect("write");
        assert_eq!(files.read(4).expect("read").as_deref(), Some("holder-1"));
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&files.path(4)), 0o600);
        assert_eq!(mode(files.dir()), 0o700);
        assert!(matches!(
            files.write(4, Some("a b")),
            Err(TokenError::BadControl(_))
        ));
        files.write(4, None).expect("remove");
        assert_eq!(files.read(4).expect("removed"), None);
        fs::write(files.path(6), "x y\n").expect("garble");
        assert!(matches!(
            files.read(6),
            Err(TokenError::ControlContent { .. })
        ));
        files.clear().expect("clear");
        assert_eq!(files.read(5).expect("cleared"), None);
        assert_eq!(fs::read_dir(files.dir()).expect("list").count(), 0);
    }

    #[test]
    fn live_view_files_mark_off_atomically_and_unreadable_ones_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = LiveViewFiles::new(dir.path());
        assert_eq!(files.path(2), dir.path().join("liveview").join("2"));
        assert!(!files.is_off(2).expect("no dir yet: on"));
        files
            .set_off(2, false)
            .expect("turning on what is on is fine");
        assert!(!files.dir().exists(), "turning on creates nothing");

        files.set_off(2, true).expect("off");
        assert!(files.is_off(2).expect("read"));
        assert!(!files.is_off(3).expect("another desktop stays on"));
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&files.path(2)), 0o600);
        assert_eq!(mode(files.dir()), 0o700);
        files.set_off(2, true).expect("off again is fine");
        assert!(files.is_off(2).expect("still off"));

        files.set_off(2, false).expect("on");
        assert!(!files.is_off(2).expect("on again"));
        assert_eq!(fs::read_dir(files.dir()).expect("list").count(), 0);

        // Any content means off; something that cannot be read is an error naming the file.
        fs::write(files.path(4), "").expect("empty file");
        assert!(files.is_off(4).expect("empty file: off"));
        fs::create_dir(files.path(5)).expect("a directory in its place");
        let err = files.is_off(5).expect_err("directory");
        assert!(matches!(err, TokenError::LiveViewIo { .. }), "{err}");
        assert!(err.to_string().contains("liveview/5"), "{err}");
    }
}
