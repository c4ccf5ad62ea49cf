//! Encryption at rest for data that must not sit in the store in clear (browser checkpoints:
//! cookies, storage).
//!
//! A [`Sealer`] holds a 32-byte key kept in a file of the state directory (0600, created on
//! first use in a 0700 directory). [`Sealer::seal`] encrypts with ChaCha20-Poly1305 under a
//! fresh random 96-bit nonce and returns a JSON value
//! `{"sealed":"chacha20-poly1305","nonce":"<base64>","data":"<base64>"}` to store in place of
//! the data. The associated data (the session id for checkpoints) is authenticated but not
//! stored: a sealed value only opens with the same associated data, so a checkpoint cannot be
//! moved to another session, and any change to the value, or another key, makes
//! [`Sealer::open`] fail.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// The `sealed` tag of a value sealed by this module.
pub const ALGORITHM: &str = "chacha20-poly1305";

/// Length of the key file.
pub const KEY_LEN: usize = 32;

/// Why a key could not be loaded or a value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("unusable sealing key: {0}")]
    BadKey(String),
    #[error("cannot open sealed data: {0}")]
    Corrupt(String),
}

/// Seals and opens values under one key (see the module doc).
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("algorithm", &ALGORITHM)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// The key at `path` (32 random bytes, created 0600 with its parent dir 0700 if missing,
    /// like `typed_text`'s key).
    pub fn load_or_create(path: &Path) -> Result<Sealer, SealError> {
        let key = load_or_create_key(path)?;
        Sealer::from_key(&key)
    }

    /// A sealer over a key held by the caller.
    pub fn from_key(key: &[u8; KEY_LEN]) -> Result<Sealer, SealError> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key)
            .map_err(|_| SealError::BadKey("not a ChaCha20-Poly1305 key".into()))?;
        Ok(Sealer {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// `plaintext` encrypted and authenticated together with `aad` (which is not stored).
    ///
    /// Sealing fails only if the system's random source does or the input is hundreds of
    /// gigabytes; then the failure is logged and the returned value never opens
    /// ([`Sealer::try_seal`] reports it instead).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Value {
        self.try_seal(plaintext, aad).unwrap_or_else(|e| {
            tracing::error!(error = %e, "sealing failed: the value is dropped");
            json!({"sealed": ALGORITHM, "nonce": "", "data": ""})
        })
    }

    /// [`Sealer::seal`], reporting a failure.
    pub fn try_seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Value, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| SealError::BadKey("the system random source failed".into()))?;
        // Room for the tag up front: a reallocation would leave a copy of the plaintext behind.
        let mut data = Zeroizing::new(Vec::with_capacity(
            plaintext.len() + CHACHA20_POLY1305.tag_len(),
        ));
        data.extend_from_slice(plaintext);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut *data,
            )
            .map_err(|_| SealError::Corrupt("the data is too large to seal".into()))?;
        Ok(json!({
            "sealed": ALGORITHM,
            "nonce": STANDARD.encode(nonce),
            "data": STANDARD.encode(data.as_slice()),
        }))
    }

    /// The plaintext of a value sealed by [`Sealer::seal`] under the same key and `aad`.
    pub fn open(&self, v: &Value, aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let corrupt = |m: &str| SealError::Corrupt(m.to_owned());
        match v.get("sealed").and_then(Value::as_str) {
            Some(ALGORITHM) => {}
            Some(other) => return Err(corrupt(&format!("unknown algorithm {other:?}"))),
            None => return Err(corrupt("not a sealed value")),
        }
        let field = |name: &str| {
            let s = v
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| corrupt(&format!("no {name}")))?;
            STANDARD
                .decode(s)
                .map_err(|_| corrupt(&format!("{name} is not base64")))
        };
        let nonce: [u8; NONCE_LEN] = field("nonce")?
            .try_into()
            .map_err(|_| corrupt("the nonce is not 12 bytes"))?;
        let mut data = field("data")?;
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut data,
            )
            .map_err(|_| {
                corrupt("authentication failed (another key, another session, or altered data)")
            })?
            .len();
        data.truncate(len);
        Ok(data)
    }

    /// Whether `v` is a sealed value (of this or another algorithm) rather than data in clear.
    pub fn is_sealed(v: &Value) -> bool {
        v.get("sealed").is_some_and(Value::is_string)
    }
}

/// Reads the key at `path`, or creates it (random, 0600, parent directories 0700).
fn load_or_create_key(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, SealError> {
    let io = |source| SealError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                SealError::BadKey(format!(
                    "{}: expected {KEY_LEN} key bytes, found {}",
                    path.display(),
                    bytes.len()
                ))
            })?;
            return Ok(Zeroizing::new(key));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| SealError::Io {
                path: dir.display().to_string(),
                source,
            })?;
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    SystemRandom::new()
        .fill(&mut *key)
        .map_err(|_| SealError::BadKey("the system random source failed".into()))?;
    match crate::keyfile::publish_new(path, &*key).map_err(io)? {
        crate::keyfile::Published::Created => Ok(key),
        crate::keyfile::Published::AlreadyExists => load_or_create_key(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const MARKER: &[u8] = b"{\"cookies\":[{\"name\":\"session\",\"value\":\"MARKER-c00kie-42\"}]}";

    fn sealer(dir: &Path) -> Sealer {
        Sealer::load_or_create(&dir.join("keys/checkpoint.key")).expect("sealer")
    }

    fn corrupt(r: Result<Vec<u8>, SealError>) -> String {
        match r {
            Err(SealError::Corrupt(m)) => m,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    fn with_data(v: &Value, f: impl FnOnce(&mut Vec<u8>)) -> Value {
        let mut data = STANDARD
            .decode(v["data"].as_str().expect("data"))
            .expect("b64");
        f(&mut data);
        let mut v = v.clone();
        v["data"] = STANDARD.encode(&data).into();
        v
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = sealer(dir.path());
        for plain in [&b""[..], MARKER, &vec![7u8; 1 << 20]] {
            let v = s.seal(plain, b"session-1");
            assert!(Sealer::is_sealed(&v));
            assert_eq!(v["sealed"], ALGORITHM);
            assert_eq!(s.open(&v, b"session-1").expect("open"), plain);
            // Through its JSON text, as it is stored.
            let stored: Value =
                serde_json::from_str(&serde_json::to_string(&v).expect("json")).expect("parse");
            assert_eq!(s.open(&stored, b"session-1").expect("open"), plain);
        }
    }

    #[test]
    fn sealed_json_holds_no_plaintext_and_nonces_differ() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = sealer(dir.path());
        let a = s.seal(MARKER, b"session-1");
        let b = s.seal(MARKER, b"session-1");
        let text = serde_json::to_string(&a).expect("json");
        assert!(!text.contains("MARKER"), "{text}");
        assert!(!text.contains("c00kie"), "{text}");
        assert!(!text.contains(&STANDARD.encode(MARKER)[..16]), "{text}");
        assert!(!text.contains("session-1"), "the aad is not stored: {text}");
        let keys: Vec<_> = a.as_object().expect("object").keys().cloned().collect();
        assert_eq!(keys, ["data", "nonce", "sealed"]);
        assert_ne!(a["nonce"], b["nonce"]);
        assert_ne!(a["data"], b["data"]);
        assert_eq!(
            STANDARD
                .decode(a["nonce"].as_str().expect("nonce"))
                .expect("b64")
                .len(),
            12
        );
    }

    #[test]
    fn wrong_aad_tampering_and_another_key_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = sealer(dir.path());
        let v = s.seal(MARKER, b"session-1");
        assert!(corrupt(s.open(&v, b"session-2")).contains("authentication"));
        assert!(corrupt(s.open(&v, b"")).contains("authentication"));
        // Every flipped byte of the ciphertext or the tag is noticed.
        let n = MARKER.len() + 16;
        for i in [0, MARKER.len() / 2, MARKER.len(), n - 1] {
            let bad = with_data(&v, |d| d[i] ^= 1);
            corrupt(s.open(&bad, b"session-1"));
        }
        corrupt(s.open(&with_data(&v, |d| d.truncate(n - 1)), b"session-1"));
        corrupt(s.open(&with_data(&v, |d| d.push(0)), b"session-1"));
        let mut bad = v.clone();
        let mut nonce = STANDARD
            .decode(v["nonce"].as_str().expect("nonce"))
            .expect("b64");
        nonce[0] ^= 1;
        bad["nonce"] = STANDARD.encode(&nonce).into();
        corrupt(s.open(&bad, b"session-1"));
        let other = tempfile::tempdir().expect("tempdir");
        let t = sealer(other.path());
        assert!(corrupt(t.open(&v, b"session-1")).contains("authentication"));
        assert_eq!(s.open(&v, b"session-1").expect("still opens"), MARKER);
    }

    #[test]
    fn malformed_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = sealer(dir.path());
        let v = s.seal(MARKER, b"s");
        for (bad, why) in [
            (json!({"cookies": []}), "not a sealed value"),
            (json!("text"), "not a sealed value"),
            (
                json!({"sealed": "aes-gcm", "nonce": "", "data": ""}),
                "unknown algorithm",
            ),
            (json!({"sealed": ALGORITHM, "data": v["data"]}), "no nonce"),
            (json!({"sealed": ALGORITHM, "nonce": v["nonce"]}), "no data"),
            (
                json!({"sealed": ALGORITHM, "nonce": "!!", "data": v["data"]}),
                "nonce is not base64",
            ),
            (
                json!({"sealed": ALGORITHM, "nonce": "AAAA", "data": v["data"]}),
                "not 12 bytes",
            ),
            (
                json!({"sealed": ALGORITHM, "nonce": v["nonce"], "data": "AAAA"}),
                "authentication",
            ),
        ] {
            let m = corrupt(s.open(&bad, b"s"));
            assert!(m.contains(why), "{bad}: {m}");
        }
        assert!(!Sealer::is_sealed(&json!({"cookies": []})));
        assert!(!Sealer::is_sealed(&json!({"sealed": true})));
        assert!(!Sealer::is_sealed(&json!([1, 2])));
        assert!(Sealer::is_sealed(&json!({"sealed": "aes-gcm"})));
    }

    #[test]
    fn key_file_is_private_created_with_its_dir_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/checkpoint.key");
        let s = Sealer::load_or_create(&path).expect("create");
        let meta = std::fs::metadata(&path).expect("key file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_LEN as u64);
        let dir_mode = std::fs::metadata(dir.path().join("keys"))
            .expect("key dir")
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let key = std::fs::read(&path).expect("read");
        let v = s.seal(MARKER, b"session-1");
        let again = Sealer::load_or_create(&path).expect("load");
        assert_eq!(std::fs::read(&path).expect("read"), key, "key kept");
        assert_eq!(again.open(&v, b"session-1").expect("open"), MARKER);
        assert!(!path.with_extension("key.tmp").exists());
        let dbg = format!("{again:?}");
        assert!(dbg.contains(ALGORITHM), "{dbg}");
        assert!(!dbg.contains(&format!("{:?}", &key[..4])), "{dbg}");
    }

    #[test]
    fn a_short_or_long_key_file_is_bad_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [0, 16, 31, 33] {
            let path = dir.path().join(format!("k{len}"));
            std::fs::write(&path, vec![1u8; len]).expect("write");
            match Sealer::load_or_create(&path) {
                Err(SealError::BadKey(m)) => assert!(m.contains(&format!("found {len}")), "{m}"),
                other => panic!("{len} bytes: expected BadKey, got {other:?}"),
            }
            assert_eq!(
                std::fs::read(&path).expect("read").len(),
                len,
                "left as it was"
            );
        }
    }

    #[test]
    fn an_unusable_path_is_io() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        match Sealer::load_or_create(&file.join("key")) {
            Err(SealError::Io { path, .. }) => assert!(path.contains("file"), "{path}"),
            other => panic!("expected Io, got {other:?}"),
        }
    }
}
