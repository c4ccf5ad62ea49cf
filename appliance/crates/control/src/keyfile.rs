//! Publishing a new secret key file: written 0600 from its first byte to a temporary file,
//! synced, then hard-linked into place, so two processes racing to create the same key both
//! end up with whichever landed first (the action log's hash key, the checkpoint sealing key).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// What [`publish_new`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// `key` is now the file's content.
    Created,
    /// Another process created the file first: read it instead.
    AlreadyExists,
}

/// Writes `key` as the new file `path` (see the module doc).
pub fn publish_new(path: &Path, key: &[u8]) -> std::io::Result<Published> {
    let tmp = path.with_extension("key.tmp");
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(key)?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok(Published::Created),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Published::AlreadyExists),
        Err(e) => Err(e),
    }
}
