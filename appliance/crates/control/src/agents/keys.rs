//! Write-only provider API keys of agent profiles: one file per profile under
//! `<state>/secrets/agent-keys/`, mode 0600, owned by the control plane's user. Never in redb,
//! logs, events or API replies; the API only says whether one is set.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;
use zigral_llm::ApiKey;

/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 4096;

/// Why a key could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the API key must be 1–4096 printable characters without spaces")]
    Invalid,
    #[error("cannot store the API key: {0}")]
    Io(#[from] std::io::Error),
}

/// The key files of every profile.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    pub fn new(state_dir: &Path) -> KeyStore {
        KeyStore {
            dir: state_dir.join("secrets").join("agent-keys"),
        }
    }

    fn path(&self, profile: &str) -> PathBuf {
        self.dir.join(profile)
    }

    /// Stores `key` for `profile` (atomically replacing an older one).
    pub fn set(&self, profile: &str, key: &str) -> Result<(), KeyError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.chars().all(|c| c.is_ascii_graphic()) {
            return Err(KeyError::Invalid);
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let tmp = self.dir.join(format!(".{profile}.tmp"));
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(key.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.path(profile))?;
        Ok(())
    }

    /// Removes `profile`'s key (absent is fine).
    pub fn remove(&self, profile: &str) -> Result<(), KeyError> {
        match std::fs::remove_file(self.path(profile)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// `profile`'s key, if one is stored.
    pub fn get(&self, profile: &str) -> Result<Option<ApiKey>, KeyError> {
        match std::fs::read(self.path(profile)) {
            Ok(b) => {
                let b = Zeroizing::new(b);
                Ok(Some(ApiKey::new(
                    String::from_utf8_lossy(&b).trim().to_owned(),
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
