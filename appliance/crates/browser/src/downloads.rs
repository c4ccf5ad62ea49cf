//! Downloads: Chrome saves them into the desktop's downloads directory (set with
//! `Browser.setDownloadBehavior` on every connect); these functions list them and resolve a
//! name to a path safely (plain file names only, no traversal).

use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::{Browser, BrowserError, Result};

/// One file in the downloads directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadInfo {
    pub name: String,
    pub size: u64,
    /// Last modification, Unix milliseconds.
    pub modified_ms: u64,
    /// False while Chrome is still writing it (`.crdownload`).
    pub complete: bool,
}

impl Browser {
    fn downloads_dir(&self) -> Result<&PathBuf> {
        self.inner
            .opts
            .downloads_dir
            .as_ref()
            .ok_or_else(|| BrowserError::NotFound("no downloads directory configured".into()))
    }

    /// The files in the downloads directory, newest first.
    pub fn downloads(&self) -> Result<Vec<DownloadInfo>> {
        let dir = self.downloads_dir()?;
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent?;
            let md = ent.metadata()?;
            if !md.is_file() {
                continue;
            }
            let Ok(name) = ent.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            out.push(DownloadInfo {
                complete: !name.ends_with(".crdownload"),
                size: md.len(),
                modified_ms: md
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                name,
            });
        }
        out.sort_by(|a, b| b.modified_ms.cmp(&a.modified_ms).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    /// The path of the downloaded file `name` (a plain file name inside the directory).
    pub fn download_path(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty()
            || name.len() > 255
            || name.starts_with('.')
            || name.contains(['/', '\\', '\0'])
        {
            return Err(BrowserError::Invalid(format!(
                "{name:?} is not a plain file name"
            )));
        }
        let dir = self.downloads_dir()?;
        let p = dir.join(name);
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.is_file() => Ok(p),
            _ => Err(BrowserError::NotFound(format!(
                "no download named {name:?}"
            ))),
        }
    }
}
