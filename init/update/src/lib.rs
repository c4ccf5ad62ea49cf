//! Signed update bundles for the appliance's A/B slots, the parts both sides read.
//!
//! A bundle is `NAME.tar.zst` (the slot's files: `bin/zigral`, `ui/`, `release`) with a
//! detached minisign (Ed25519) signature `NAME.tar.zst.minisig`. The signature's *trusted
//! comment* carries the [`Manifest`] (`zigral-bundle version=1.2.3 serial=N schema=N git=REV`),
//! so whoever holds the appliance's public key learns what a bundle is before unpacking it,
//! and nobody can relabel a bundle without the secret key.
//!
//! The control plane (unprivileged) checks an upload with [`verify`] and [`check_newer`] for a
//! clear answer; zigral-init's updater (root) checks again before it touches a slot. The
//! updater writes [`UpdateStatus`] to `<state>/updates/status.json`; the control plane reads it
//! for `GET /api/v1/admin/update`.

use std::fmt;
use std::io::Read;

use base64::Engine;
use serde::{Deserialize, Serialize};

/// First word of a bundle's trusted comment.
pub const TRUSTED_PREFIX: &str = "zigral-bundle";
/// The updates folder, relative to the state dir: uploads land here, and so may a bundle and
/// its signature dropped in by hand.
pub const UPDATES_DIR: &str = "updates";
/// Accepted bundles waiting for (or being applied by) the updater, under [`UPDATES_DIR`].
pub const READY_DIR: &str = "ready";
/// The updater's progress and last outcome, under [`UPDATES_DIR`].
pub const STATUS_FILE: &str = "status.json";
/// Present under [`UPDATES_DIR`] while the updater restarts services and runs the health
/// gate: the control plane refuses writes meanwhile (503 + Retry-After), so a rollback that
/// restores the pre-update database loses no acknowledged write.
pub const GATE_FILE: &str = "gate";
/// File names of a bundle and its signature in [`READY_DIR`].
pub const BUNDLE_EXT: &str = "tar.zst";
pub const SIG_EXT: &str = "tar.zst.minisig";

/// Why a bundle, a key or a release file was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("the update public key is not a minisign public key: {0}")]
    BadKey(String),
    #[error("the signature is not a minisign signature: {0}")]
    BadSignatureFile(String),
    #[error(
        "the bundle is signed by key {signed_by}, but this appliance trusts only key {trusted}"
    )]
    WrongKey { signed_by: String, trusted: String },
    #[error("the signature does not match the bundle (corrupted or altered in transit)")]
    SignatureMismatch,
    #[error("the signature's trusted comment is not a zigral bundle manifest: {0}")]
    BadManifest(String),
    #[error("the release file is unreadable: {0}")]
    BadRelease(String),
    #[error(
        "bundle version {offered} is not newer than the running {running}; send force=true to install it anyway"
    )]
    NotNewer { offered: String, running: String },
    #[error("reading the bundle: {0}")]
    Io(#[from] std::io::Error),
}

/// What a bundle is, from its signature's trusted comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `MAJOR.MINOR.PATCH` (the workspace version at build time, or `--version`).
    pub version: String,
    /// Build serial (seconds since the epoch at bundle build): orders bundles of one version.
    pub serial: u64,
    /// The store schema version the bundle's control plane migrates to.
    pub schema: u64,
    /// Source revision.
    pub git: String,
}

fn triple(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
    let t = (it.next()??, it.next()??, it.next()??);
    if it.next().is_some() {
        return None;
    }
    Some(t)
}

impl Manifest {
    /// Parses `zigral-bundle version=1.2.3 serial=N schema=N git=REV` (any order after the
    /// prefix; unknown keys are refused so a typo is not silently ignored).
    pub fn parse(trusted: &str) -> Result<Manifest, UpdateError> {
        let bad = |m: String| UpdateError::BadManifest(m);
        let mut words = trusted.split_whitespace();
        if words.next() != Some(TRUSTED_PREFIX) {
            return Err(bad(format!(
                "'{}' does not start with '{TRUSTED_PREFIX}'",
                trusted.chars().take(80).collect::<String>()
            )));
        }
        let (mut version, mut serial, mut schema, mut git) = (None, None, None, None);
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| bad(format!("'{w}' is not key=value")))?;
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("{k}={v} is not a number")))
            };
            match k {
                "version" => {
                    triple(v)
                        .ok_or_else(|| bad(format!("version={v} is not MAJOR.MINOR.PATCH")))?;
                    version = Some(v.to_string());
                }
                "serial" => serial = Some(num(v)?),
                "schema" => schema = Some(num(v)?),
                "git" => git = Some(v.to_string()),
                other => return Err(bad(format!("unknown key '{other}'"))),
            }
        }
        Ok(Manifest {
            version: version.ok_or_else(|| bad("no version=".into()))?,
            serial: serial.ok_or_else(|| bad("no serial=".into()))?,
            schema: schema.ok_or_else(|| bad("no schema=".into()))?,
            git: git.unwrap_or_else(|| "unknown".into()),
        })
    }

    /// The trusted comment that [`Manifest::parse`] reads back.
    pub fn trusted_comment(&self) -> String {
        format!(
            "{TRUSTED_PREFIX} version={} serial={} schema={} git={}",
            self.version, self.serial, self.schema, self.git
        )
    }

    fn order(&self) -> (u64, u64, u64, u64) {
        let (a, b, c) = triple(&self.version).unwrap_or_default();
        (a, b, c, self.serial)
    }
}

impl fmt::Display for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (serial {}, {})", self.version, self.serial, self.git)
    }
}

/// A slot's `release` file (`key=value` lines): what runs. Images older than the update
/// feature have no `version=` line: they count as version 0.0.0, serial 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub version: String,
    pub serial: u64,
    pub schema: u64,
    pub git: String,
}

impl Release {
    pub fn parse(text: &str) -> Result<Release, UpdateError> {
        let mut r = Release {
            version: "0.0.0".into(),
            git: "unknown".into(),
            ..Release::default()
        };
        for line in text.lines().map(str::trim) {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let num = || {
                v.parse::<u64>()
                    .map_err(|_| UpdateError::BadRelease(format!("{k}={v} is not a number")))
            };
            match k {
                "version" => {
                    triple(v).ok_or_else(|| {
                        UpdateError::BadRelease(format!("version={v} is not MAJOR.MINOR.PATCH"))
                    })?;
                    r.version = v.to_string();
                }
                "serial" => r.serial = num()?,
                "schema" => r.schema = num()?,
                "git" => r.git = v.to_string(),
                _ => {}
            }
        }
        Ok(r)
    }

    /// The manifest of this release, for comparisons.
    pub fn as_manifest(&self) -> Manifest {
        Manifest {
            version: self.version.clone(),
            serial: self.serial,
            schema: self.schema,
            git: self.git.clone(),
        }
    }
}

/// Refuses a bundle that is not newer than what runs (same version and serial included),
/// unless `force`.
pub fn check_newer(offered: &Manifest, running: &Release, force: bool) -> Result<(), UpdateError> {
    let running = running.as_manifest();
    if force || offered.order() > running.order() {
        return Ok(());
    }
    Err(UpdateError::NotNewer {
        offered: offered.to_string(),
        running: running.to_string(),
    })
}

/// The 8-byte key id of a minisign key or signature line (base64 of alg(2) | id(8) | ...),
/// as minisign prints it (upper-case hex, little-endian).
fn key_id(b64: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let id = raw.get(2..10)?;
    Some(id.iter().rev().map(|b| format!("{b:02X}")).collect())
}

/// The base64 line of a public key file's text (after its optional untrusted comment).
fn key_line(pubkey_text: &str) -> Option<&str> {
    pubkey_text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
}

/// The key id of a public key file's text (`untrusted comment: ...` + base64 line, or the
/// bare base64 line).
pub fn public_key_id(pubkey_text: &str) -> Result<String, UpdateError> {
    let line = key_line(pubkey_text).ok_or_else(|| UpdateError::BadKey("empty".into()))?;
    minisign_verify::PublicKey::from_base64(line)
        .map_err(|e| UpdateError::BadKey(e.to_string()))?;
    key_id(line).ok_or_else(|| UpdateError::BadKey("not base64".into()))
}

/// Verifies `data` (read to the end, in chunks) against `sig_text` with the public key
/// `pubkey_text`; answers the signed [`Manifest`].
pub fn verify(
    pubkey_text: &str,
    sig_text: &str,
    mut data: impl Read,
) -> Result<Manifest, UpdateError> {
    let trusted = public_key_id(pubkey_text)?;
    let pk = minisign_verify::PublicKey::from_base64(key_line(pubkey_text).unwrap_or_default())
        .map_err(|e| UpdateError::BadKey(e.to_string()))?;
    let sig = minisign_verify::Signature::decode(sig_text.trim())
        .map_err(|e| UpdateError::BadSignatureFile(e.to_string()))?;
    let sig_line = sig_text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.contains(':'))
        .unwrap_or_default();
    let signed_by = key_id(sig_line)
        .ok_or_else(|| UpdateError::BadSignatureFile("no signature line".into()))?;
    if signed_by != trusted {
        return Err(UpdateError::WrongKey { signed_by, trusted });
    }
    let mut v = pk
        .verify_stream(&sig)
        .map_err(|e| UpdateError::BadSignatureFile(e.to_string()))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            break;
        }
        v.update(&buf[..n]);
    }
    v.finalize().map_err(|_| UpdateError::SignatureMismatch)?;
    Manifest::parse(sig.trusted_comment())
}

/// Where an update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Checking the signature and the version again (as root).
    Verifying,
    /// Unpacking into the inactive slot.
    Unpacking,
    /// Copying the database aside (control plane stopped).
    Snapshot,
    /// Switched to the new slot; restarting our services.
    Restarting,
    /// Waiting for the health gate.
    Gate,
    /// The new slot passed the gate and is the good one.
    Committed,
    /// The new slot failed the gate (or a reboot cut the update): back on the old slot.
    RolledBack,
    /// Refused or failed before anything switched: nothing changed.
    Failed,
}

impl Phase {
    /// Whether the update has ended.
    pub fn finished(self) -> bool {
        matches!(self, Phase::Committed | Phase::RolledBack | Phase::Failed)
    }
}

/// The updater's status file ([`STATUS_FILE`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// The bundle's id (its file name stem in [`READY_DIR`]).
    pub id: String,
    pub phase: Phase,
    /// One sentence for people: what happens now, or how it ended and why.
    pub message: String,
    /// The bundle's version and the one it replaces.
    pub version: String,
    pub from_version: String,
    /// The slot the bundle went into, and the slot that runs now.
    pub slot: String,
    pub active_slot: String,
    pub forced: bool,
    pub started_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn manifests_parse_and_order() {
        let m = Manifest::parse("zigral-bundle version=1.2.3 serial=7 schema=4 git=abc").unwrap();
        assert_eq!(m.version, "1.2.3");
        assert_eq!(Manifest::parse(&m.trusted_comment()).unwrap(), m);
        for bad in [
            "timestamp:1\tfile:x",
            "zigral-bundle version=1.2 serial=1 schema=1",
            "zigral-bundle version=1.2.3 serial=x schema=1",
            "zigral-bundle version=1.2.3 serial=1",
            "zigral-bundle version=1.2.3 serial=1 schema=1 color=red",
        ] {
            assert!(
                matches!(Manifest::parse(bad), Err(UpdateError::BadManifest(_))),
                "{bad}"
            );
        }
        let running =
            Release::parse("profile=network\nversion=1.2.3\nserial=7\nschema=4\n").unwrap();
        assert!(matches!(
            check_newer(&m, &running, false),
            Err(UpdateError::NotNewer { .. })
        ));
        check_newer(&m, &running, true).unwrap();
        let newer = Manifest {
            serial: 8,
            ..m.clone()
        };
        check_newer(&newer, &running, false).unwrap();
        let older = Manifest {
            version: "1.1.9".into(),
            serial: 99,
            ..m
        };
        let e = check_newer(&older, &running, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not newer than the running 1.2.3"), "{e}");
        // An image from before updates existed runs "0.0.0".
        assert_eq!(Release::parse("profile=dev\n").unwrap().version, "0.0.0");
    }
}
