//! Per-service log sinks: a size-capped, rotated file under `<state>/logs/<service>.log` and
//! the supervisor's console with a `[service]` prefix.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::LogDef;

/// Where one service's output goes.
#[derive(Debug)]
pub struct LogSink {
    name: String,
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
    keep: u32,
    to_file: bool,
    console: bool,
    /// Bytes of an unfinished console line.
    partial: Vec<u8>,
}

impl LogSink {
    /// A sink for service `name` writing under `dir` per `def`.
    pub fn new(name: &str, dir: &Path, def: &LogDef) -> LogSink {
        LogSink {
            name: name.to_string(),
            path: dir.join(format!("{name}.log")),
            file: None,
            size: 0,
            max: def.max_size.0,
            keep: def.keep,
            to_file: def.file,
            console: def.console,
            partial: Vec::new(),
        }
    }

    /// Path of the current log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
            self.file = Some(f);
        }
        match self.file.as_mut() {
            Some(f) => Ok(f),
            None => Err(std::io::Error::other("log file not open")),
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        let base = self.path.display().to_string();
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(format!("{base}.{}", self.keep));
            for i in (1..self.keep).rev() {
                let _ = std::fs::rename(format!("{base}.{i}"), format!("{base}.{}", i + 1));
            }
            let _ = std::fs::rename(&self.path, format!("{base}.1"));
        }
        self.size = 0;
    }

    /// Writes raw output bytes to the file and whole lines to the console.
    pub fn write(&mut self, data: &[u8]) {
        if self.to_file {
            if self.size > 0 && self.size + data.len() as u64 > self.max {
                self.rotate();
            }
            match self.open() {
                Ok(f) => {
                    if f.write_all(data).is_ok() {
                        self.size += data.len() as u64;
                    }
                }
                Err(e) => {
                    tracing::warn!("log file {}: {e}", self.path.display());
                    self.to_file = false;
                }
            }
        }
        if self.console {
            self.partial.extend_from_slice(data);
            if let Some(last_nl) = self.partial.iter().rposition(|&b| b == b'\n') {
                let lines: Vec<u8> = self.partial.drain(..=last_nl).collect();
                let mut out = Vec::with_capacity(lines.len() + 32);
                for line in lines.split(|&b| b == b'\n') {
                    if line.is_empty() {
                        continue;
                    }
                    out.extend_from_slice(format!("[{}] ", self.name).as_bytes());
                    out.extend_from_slice(line);
                    out.push(b'\n');
                }
                let _ = std::io::stdout().lock().write_all(&out);
            } else if self.partial.len() > 4096 {
                self.flush_partial();
            }
        }
    }

    /// Prints an unfinished console line (at EOF).
    pub fn flush_partial(&mut self) {
        if self.console && !self.partial.is_empty() {
            let mut out = format!("[{}] ", self.name).into_bytes();
            out.append(&mut self.partial);
            out.push(b'\n');
            let _ = std::io::stdout().lock().write_all(&out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Size;

    #[test]
    fn rotates_at_size_cap() {
        let dir = std::env::temp_dir().join(format!("zigral-init-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let def = LogDef {
            file: true,
            console: false,
            max_size: Size(100),
            keep: 2,
        };
        let mut s = LogSink::new("svc", &dir, &def);
        for _ in 0..10 {
            s.write(&[b'x'; 40]);
        }
        let cur = std::fs::metadata(dir.join("svc.log")).unwrap().len();
        assert!(cur <= 100, "current log {cur} bytes");
        assert!(dir.join("svc.log.1").exists());
        assert!(dir.join("svc.log.2").exists());
        assert!(!dir.join("svc.log.3").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
