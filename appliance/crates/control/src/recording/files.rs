//! A recording's files: taking ffmpeg's output out of the desktop's directory, the wall-clock
//! time of its first frame (ffmpeg's report), the finalize remux that writes the chapters into
//! the MP4 (moov first, so it plays at once), the sidecar JSON, free disk space and the
//! oldest-first retention choice.
//!
//! Layout: ffmpeg (as the desktop's user) writes `<state>/desktops/N/recording/<id>.mp4` and
//! `<id>.log`; once it has exited they are moved to `<state>/recordings/` (the control plane's
//! own, 0700), remuxed into `<id>.mp4` with `<id>.json` beside it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zigral_store::RecordingRecord;

use super::chapters::{Sidecar, ffmetadata, layout};

/// Where ffmpeg writes desktop `n`'s recording `id` (`.mp4`) and its report (`.log`).
pub fn raw_path(state_dir: &Path, n: u32, id: &str, ext: &str) -> PathBuf {
    state_dir
        .join("desktops")
        .join(n.to_string())
        .join("recording")
        .join(format!("{id}.{ext}"))
}

/// `<dir>/<id>.<ext>`.
pub fn own_path(dir: &Path, id: &str, ext: &str) -> PathBuf {
    dir.join(format!("{id}.{ext}"))
}

/// Creates the recordings directory (0700).
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Whether `p` is a regular file (not a symlink to one).
fn regular(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file())
}

/// Moves ffmpeg's file and report for `id` into `dir` (renames within the state dir's
/// filesystem: no copy, so it works on a full disk). Anything but a regular file (a link a
/// compromised desktop user planted) is deleted, never followed. Returns whether a video
/// file was there.
pub fn collect(state_dir: &Path, dir: &Path, n: u32, id: &str) -> std::io::Result<bool> {
    ensure_dir(dir)?;
    let mut video = false;
    for (from_ext, to_ext) in [("mp4", "raw.mp4"), ("log", "log")] {
        let from = raw_path(state_dir, n, id, from_ext);
        if std::fs::symlink_metadata(&from).is_err() {
            continue;
        }
        let to = own_path(dir, id, to_ext);
        if !regular(&from) {
            let _ = std::fs::remove_file(&from);
            continue;
        }
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            // The desktop's directory is on another filesystem: copy, never following a link.
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                copy_nofollow(&from, &to)?;
                let _ = std::fs::remove_file(&from);
            }
            Err(e) => return Err(e),
        }
        // Checked again where no desktop user can swap it.
        if !regular(&to) {
            let _ = std::fs::remove_file(&to);
            continue;
        }
        video |= from_ext == "mp4";
    }
    Ok(video)
}

/// Copies the regular file `from` (opened without following a link) to a new `to`.
fn copy_nofollow(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(from)?;
    if !src.metadata()?.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    std::io::copy(&mut src, &mut dst)?;
    dst.sync_all()
}

/// The wall-clock time (ms since the epoch) of the first frame, from ffmpeg's report: the
/// x11grab input's `start:` (its timestamps are wall-clock microseconds).
pub fn first_frame(report: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(report).ok()?;
    let line = text
        .lines()
        .find(|l| l.contains("Duration: N/A, start: "))?;
    let v = line.split("start: ").nth(1)?.split(',').next()?.trim();
    let secs: f64 = v.parse().ok()?;
    (secs.is_finite() && secs > 0.0).then(|| (secs * 1000.0).round() as u64)
}

/// Free space of the filesystem holding `p`, MiB.
pub fn free_mb(p: &Path) -> Option<u64> {
    let c = CString::new(p.as_os_str().as_bytes()).ok()?;
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `s` points to writable memory of the
    // right type; statvfs only writes into it, and we read it only when it returned 0.
    let rc = unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let s = unsafe { s.assume_init() };
    Some(s.f_bavail.saturating_mul(s.f_frsize) / (1024 * 1024))
}

/// What a finalize produced.
#[derive(Debug)]
pub struct Finished {
    pub size_bytes: u64,
    pub duration_ms: u64,
    pub sidecar: Sidecar,
    /// Set when the chapters could only go into the sidecar (the remux failed; the file is
    /// ffmpeg's fragmented MP4 as written, which plays too).
    pub note: Option<String>,
}

/// Writes `<id>.mp4` (chapters inside, moov first) and `<id>.json` from the collected raw
/// file. `first` is the first frame's wall-clock time; the file ends at `end_ms` (wall clock),
/// or where a pause still open at the stop began (nothing after it is kept).
pub async fn finalize(
    dir: &Path,
    rec: &RecordingRecord,
    first: u64,
    end_ms: u64,
) -> Result<Finished, String> {
    let raw = own_path(dir, &rec.id, "raw.mp4");
    if !regular(&raw) {
        return Err("no video was written".into());
    }
    let open_pause = rec
        .pauses
        .iter()
        .find(|p| p.to_ms.is_none())
        .map(|p| p.from_ms);
    let end = open_pause.map_or(end_ms, |p| p.min(end_ms));
    let duration_ms = end.saturating_sub(first);
    let sidecar = layout(rec, first, duration_ms);
    let meta = own_path(dir, &rec.id, "chapters.txt");
    std::fs::write(&meta, ffmetadata(&sidecar)).map_err(|e| format!("chapters file: {e}"))?;
    let tmp = own_path(dir, &rec.id, "tmp.mp4");
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
        .arg(&raw)
        .args(["-f", "ffmetadata", "-i"])
        .arg(&meta)
        .args([
            "-map",
            "0:v",
            "-map_metadata",
            "1",
            "-map_chapters",
            "1",
            "-c",
            "copy",
        ]);
    if open_pause.is_some() {
        // Frames after the freeze may have been captured while the process was killed.
        cmd.args(["-t", &format!("{:.3}", duration_ms as f64 / 1000.0)]);
    }
    cmd.args(["-movflags", "+faststart", "-f", "mp4", "-y"])
        .arg(&tmp)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = cmd.output().await;
    let final_path = own_path(dir, &rec.id, "mp4");
    let note = match out {
        Ok(o) if o.status.success() => {
            std::fs::rename(&tmp, &final_path).map_err(|e| format!("rename: {e}"))?;
            let _ = std::fs::remove_file(&raw);
            None
        }
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("ffmpeg failed")
                    .to_owned(),
                Err(e) => format!("cannot run ffmpeg: {e}"),
            };
            let _ = std::fs::remove_file(&tmp);
            if open_pause.is_some() {
                // Without the cut the file could hold frames after the freeze: keep nothing.
                let _ = std::fs::remove_file(&raw);
                let _ = std::fs::remove_file(&meta);
                return Err(format!("the remux failed ({why}); nothing was kept"));
            }
            std::fs::rename(&raw, &final_path).map_err(|e| format!("rename: {e}"))?;
            Some(format!(
                "chapters are only in the sidecar JSON: the remux failed ({why})"
            ))
        }
    };
    let _ = std::fs::remove_file(&meta);
    let _ = std::fs::set_permissions(&final_path, std::fs::Permissions::from_mode(0o600));
    let side = serde_json::to_vec_pretty(&sidecar).map_err(|e| e.to_string())?;
    std::fs::write(own_path(dir, &rec.id, "json"), side).map_err(|e| format!("sidecar: {e}"))?;
    let size_bytes = std::fs::metadata(&final_path).map(|m| m.len()).unwrap_or(0);
    Ok(Finished {
        size_bytes,
        duration_ms,
        sidecar,
        note,
    })
}

/// Deletes every file of recording `id` in `dir` (and what ffmpeg left in the desktop's
/// directory).
pub fn remove_all(state_dir: &Path, dir: &Path, n: u32, id: &str) {
    for ext in ["mp4", "json", "raw.mp4", "tmp.mp4", "log", "chapters.txt"] {
        let _ = std::fs::remove_file(own_path(dir, id, ext));
    }
    for ext in ["mp4", "log"] {
        let _ = std::fs::remove_file(raw_path(state_dir, n, id, ext));
    }
}

/// The finished recordings to delete, oldest first, so the rest fit in `cap` bytes (the
/// newest is always kept, even alone above the cap).
pub fn over_cap(finished: &[RecordingRecord], cap: u64) -> Vec<String> {
    let mut total: u64 = finished.iter().filter_map(|r| r.size_bytes).sum();
    let mut out = Vec::new();
    let mut by_age: Vec<&RecordingRecord> = finished.iter().collect();
    by_age.sort_by_key(|r| (r.started_at, r.id.clone()));
    let keep_last = by_age.len().saturating_sub(1);
    for r in by_age.into_iter().take(keep_last) {
        if total <= cap {
            break;
        }
        total = total.saturating_sub(r.size_bytes.unwrap_or(0));
        out.push(r.id.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_frame_from_the_report() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.log");
        std::fs::write(
            &p,
            "ffmpeg started\nInput #0, x11grab, from ':91':\n  Duration: N/A, start: 1795548219.408742, bitrate: 327680 kb/s\n",
        )
        .unwrap();
        assert_eq!(first_frame(&p), Some(1_795_548_219_409));
        std::fs::write(&p, "no frame yet\n").unwrap();
        assert_eq!(first_frame(&p), None);
    }

    #[test]
    fn collect_refuses_links() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path();
        let out = state.join("recordings");
        let rec = state.join("desktops/0/recording");
        std::fs::create_dir_all(&rec).unwrap();
        std::fs::write(state.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(state.join("secret"), rec.join("a.mp4")).unwrap();
        assert!(!collect(state, &out, 0, "a").unwrap());
        assert!(!out.join("a.raw.mp4").exists());
        std::fs::write(rec.join("b.mp4"), "video").unwrap();
        assert!(collect(state, &out, 0, "b").unwrap());
        assert_eq!(std::fs::read(out.join("b.raw.mp4")).unwrap(), b"video");
    }

    #[test]
    fn retention_deletes_oldest_first_and_keeps_the_newest() {
        let r = |id: &str, at: u64, size: u64| RecordingRecord {
            id: id.into(),
            desktop: 0,
            owner: "u".into(),
            state: zigral_store::RecordingState::Ready,
            fps: 10,
            max_mb: 1,
            max_secs: 1,
            started_at: at,
            first_frame_ms: None,
            stopped_at: None,
            finished_at: None,
            stop_reason: None,
            size_bytes: Some(size),
            duration_ms: None,
            chapters: vec![],
            pauses: vec![],
            error: None,
        };
        let all = vec![r("c", 3, 50), r("a", 1, 50), r("b", 2, 50)];
        assert_eq!(over_cap(&all, 100), vec!["a".to_string()]);
        assert_eq!(over_cap(&all, 10), vec!["a".to_string(), "b".to_string()]);
        assert!(over_cap(&all, 150).is_empty());
    }
}
