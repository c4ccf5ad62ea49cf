//! Unpacking a verified bundle (tar + zstd) into a slot directory: regular files and
//! directories only, relative paths without `..`, a size cap against decompression bombs, and
//! the files a slot must have.

use std::io::Read;
use std::path::{Component, Path};

use super::UpdaterError;

/// Most bytes a bundle may unpack to.
pub const MAX_UNPACKED: u64 = 2 << 30;

/// What a slot must contain.
pub const REQUIRED: &[&str] = &["bin/zigral", "release"];

/// Unpacks `bundle` (zstd-compressed tar) into `dest`, which must not exist yet.
pub fn unpack(bundle: impl Read, dest: &Path) -> Result<(), UpdaterError> {
    let corrupt = |m: String| UpdaterError::Corrupt(m);
    let zst = ruzstd::decoding::StreamingDecoder::new(bundle)
        .map_err(|e| corrupt(format!("not a zstd stream: {e}")))?;
    let mut ar = tar::Archive::new(zst);
    std::fs::create_dir(dest)
        .map_err(|e| UpdaterError::io(format!("creating {}", dest.display()), e))?;
    let mut total = 0u64;
    let entries = ar
        .entries()
        .map_err(|e| corrupt(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(format!("reading the archive: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| corrupt(format!("an entry's name: {e}")))?
            .into_owned();
        let mut clean = std::path::PathBuf::new();
        for c in path.components() {
            match c {
                Component::Normal(p) => clean.push(p),
                Component::CurDir => {}
                _ => {
                    return Err(corrupt(format!(
                        "entry {} leaves the slot (absolute or ..)",
                        path.display()
                    )));
                }
            }
        }
        if clean.as_os_str().is_empty() {
            continue;
        }
        let kind = entry.header().entry_type();
        let target = dest.join(&clean);
        if kind.is_dir() {
            std::fs::create_dir_all(&target)
                .map_err(|e| UpdaterError::io(format!("creating {}", target.display()), e))?;
            continue;
        }
        if !kind.is_file() {
            return Err(corrupt(format!(
                "entry {} is a {:?}, not a file or directory",
                clean.display(),
                kind
            )));
        }
        total += entry.header().size().unwrap_or(0);
        if total > MAX_UNPACKED {
            return Err(corrupt(format!(
                "unpacks to more than {} MiB",
                MAX_UNPACKED >> 20
            )));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| UpdaterError::io(format!("creating {}", parent.display()), e))?;
        }
        entry.set_preserve_permissions(false);
        entry.set_preserve_mtime(true);
        entry
            .unpack(&target)
            .map_err(|e| corrupt(format!("unpacking {}: {e}", clean.display())))?;
        // Executables stay executable; nothing is writable by others or set-id.
        use std::os::unix::fs::PermissionsExt;
        let exec = entry.header().mode().unwrap_or(0o644) & 0o111 != 0;
        let mode = if exec { 0o755 } else { 0o644 };
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
            .map_err(|e| UpdaterError::io(format!("chmod {}", target.display()), e))?;
    }
    for r in REQUIRED {
        if !dest.join(r).is_file() {
            return Err(corrupt(format!("the bundle has no {r}")));
        }
    }
    Ok(())
}
