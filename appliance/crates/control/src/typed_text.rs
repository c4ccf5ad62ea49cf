//! How text typed by actions appears in the action log: in clear when the operator turned
//! `log_typed_text` on, otherwise as its length and an HMAC-SHA256 under a key kept in
//! `<state_dir>/log-hash.key` (0600, created on first use) — equal texts give equal hashes,
//! so an operator holding the key can check a guess, but the log alone never reveals it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use zigral_actions::{FullText, LengthOnly, TypedText};

/// File name of the hash key in the state directory.
pub const KEY_FILE: &str = "log-hash.key";

/// Why the hash key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: expected 32 key bytes, found {len}")]
    BadLength { path: String, len: usize },
}

/// The control plane's typed-text policy (see the module doc).
pub struct TypedTextLog {
    full: bool,
    path: PathBuf,
    key: OnceLock<Option<[u8; 32]>>,
}

impl std::fmt::Debug for TypedTextLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedTextLog")
            .field("full", &self.full)
            .field("path", &self.path)
            .finish()
    }
}

impl TypedTextLog {
    /// The policy for a state directory; `full` logs typed text in clear.
    pub fn new(state_dir: &Path, full: bool) -> TypedTextLog {
        TypedTextLog {
            full,
            path: state_dir.join(KEY_FILE),
            key: OnceLock::new(),
        }
    }

    fn key(&self) -> Option<&[u8; 32]> {
        self.key
            .get_or_init(|| match load_or_create(&self.path) {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::error!(error = %e, "no action-log hash key: typed text is logged as its length only");
                    None
                }
            })
            .as_ref()
    }
}

impl TypedText for TypedTextLog {
    fn log_value(&self, text: &str) -> Value {
        if self.full {
            return FullText.log_value(text);
        }
        let Some(key) = self.key() else {
            return LengthOnly.log_value(text);
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            return LengthOnly.log_value(text);
        };
        mac.update(text.as_bytes());
        json!({
            "chars": text.chars().count(),
            "hmac_sha256": hex::encode(mac.finalize().into_bytes()),
        })
    }
}

/// Reads the 32-byte key at `path`, or creates it (0600, random) when absent.
pub fn load_or_create(path: &Path) -> Result<[u8; 32], KeyError> {
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            return bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::BadLength {
                    path: path.display().to_string(),
                    len: bytes.len(),
                });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let key: [u8; 32] = rand::random();
    match crate::keyfile::publish_new(path, &key).map_err(io)? {
        crate::keyfile::Published::Created => Ok(key),
        crate::keyfile::Published::AlreadyExists => load_or_create(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn hashed_by_default_clear_when_asked_and_key_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = TypedTextLog::new(dir.path(), false);
        let v = log.log_value("hunter2");
        assert_eq!(v["chars"], 7);
        let h = v["hmac_sha256"].as_str().expect("hash").to_owned();
        assert_eq!(h.len(), 64);
        assert!(!v.to_string().contains("hunter2"));
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // The same key next time: equal texts hash equally across restarts.
        let again = TypedTextLog::new(dir.path(), false).log_value("hunter2");
        assert_eq!(again["hmac_sha256"], h.as_str());
        let full = TypedTextLog::new(dir.path(), true).log_value("hunter2");
        assert_eq!(full, "hunter2");
    }
}
