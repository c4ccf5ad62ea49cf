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
    /// The last bytes written (for services kept off the console: shown when they fail).
    tail: Vec<u8>,
}

/// Bytes of recent output kept per service.
const TAIL_BYTES: usize = 2048;

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
            tail: Vec::new(),
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
        if !self.console {
            self.tail.extend_from_slice(data);
            if self.tail.len() > TAIL_BYTES {
                self.tail.drain(..self.tail.len() - TAIL_BYTES);
            }
        }
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

    /// Up to `n` last non-empty output lines of a service that is kept off the console (empty
    /// for console services: their output was shown already).
    pub fn recent_lines(&self, n: usize) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.tail);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.chars().take(300).collect())
            .collect()
    }

    /// Forgets the recent output (a new run starts).
    pub fn clear_recent(&mut self) {
        self.tail.clear();
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
    fn keeps_the_last_lines_of_a_quiet_service() {
        let dir = tempfile::tempdir().unwrap();
        let quiet = LogDef {
            console: false,
            ..LogDef::default()
        };
        let mut sink = LogSink::new("chromium@0", dir.path(), &quiet);
        sink.write(b"noise 1\nnoise 2\n\n");
        sink.write(b"[1:1:FATAL:zygote_host_impl_linux.cc(128)] No usable sandbox!\n");
        let last = sink.recent_lines(2);
        assert_eq!(last.len(), 2);
        assert!(last[1].ends_with("No usable sandbox!"), "{last:?}");
        sink.clear_recent();
        assert!(sink.recent_lines(2).is_empty());
        let mut loud = LogSink::new("proxy", dir.path(), &LogDef::default());
        loud.write(b"shown on the console already\n");
        assert!(loud.recent_lines(2).is_empty());
    }

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
