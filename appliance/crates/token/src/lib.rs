//! Desktop access tokens: minted by the control plane, checked by the proxy without a call back.
//!
//! A token grants one role (`view` or `control`) on one desktop `N` until an expiry time. It is
//! `v1.<base64url(claims JSON)>.<base64url(HMAC-SHA256(key, "v1." + claims part))>`, signed with
//! a 32-byte key kept in the state directory (`proxy-signing.key`, mode 0600) that both
//! processes read. Verification is constant-time and checks version, signature, then expiry.
//!
//! Time comes from a [`Clock`] held by the key: the system clock unless a test injects a
//! [`ManualClock`] (`SigningKey::with_clock`), so expiry is tested by moving that clock, not by
//! sleeping. [`SigningKey::mint_at`] and [`SigningKey::verify_at`] take the time explicitly.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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

    /// Mints a token for `desktop`/`role` valid for `ttl_secs` from now (this key's clock).
    pub fn mint_for(&self, desktop: u32, role: Role, sub: &str, ttl_secs: u64) -> (String, Claims) {
        self.mint_at(desktop, role, sub, ttl_secs, self.clock.now_secs())
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
        let mut n = [0u8; 9];
        rand::fill(&mut n);
        let claims = Claims {
            desktop,
            role,
            exp: now.saturating_add(ttl_secs),
            sub: sub.to_owned(),
            nonce: B64.encode(n),
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
}
