//! Chapters of a recording: which events become chapters and their titles, and the two forms
//! they are written in at finalize: an FFMETADATA file (muxed into the MP4) and the sidecar
//! JSON (the same chapters with wall-clock times, and the paused intervals).

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use zigral_store::{RecordingChapter, RecordingPause, RecordingRecord};

use crate::events::Event;

/// Chapters kept per recording (an agent running for hours stays bounded).
pub const MAX_CHAPTERS: usize = 5000;

/// Longest chapter title, in characters.
const MAX_TITLE: usize = 160;

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The event's `actions` names, comma-separated.
fn action_names(d: &Value) -> String {
    d.get("actions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn clip(t: String) -> String {
    if t.chars().count() <= MAX_TITLE {
        return t;
    }
    let mut c: String = t.chars().take(MAX_TITLE - 1).collect();
    c.push('…');
    c
}

/// The chapter title of an event, or `None` for events that are not chapters (messages,
/// token and credential bookkeeping, ...). Events reach this already redacted.
pub fn title(ev: &Event) -> Option<String> {
    let d = &ev.data;
    let t = match ev.kind.as_str() {
        "agent.step" => {
            let n = d.get("n").and_then(Value::as_u64).unwrap_or(0);
            let call = s(d, "call");
            let what = if call.is_empty() {
                action_names(d)
            } else {
                call.to_owned()
            };
            let failed = if d.get("ok").and_then(Value::as_bool) == Some(false) {
                format!(" (failed: {})", s(d, "error"))
            } else {
                String::new()
            };
            format!("agent step {n}: {what}{failed}")
        }
        "actions.executed" => {
            format!("actions ({}): {}", s(d, "via"), action_names(d))
        }
        "session.control" => {
            let change = s(d, "change");
            let holder = s(d.get("holder").unwrap_or(&Value::Null), "user_name");
            match change {
                "released" | "expired" => format!("control {change}: the agent may act again"),
                _ if holder.is_empty() => format!("control {change}"),
                _ => format!("control {change} by {holder}"),
            }
        }
        "agent.turn.started" => "agent turn started".to_owned(),
        "agent.turn.ended" => {
            let why = d.get("outcome").map(|o| match o {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            match why {
                Some(w) if !w.is_empty() && w != "null" => format!("agent turn ended: {w}"),
                _ => "agent turn ended".to_owned(),
            }
        }
        "agent.input_requested" => {
            let i = d.get("input").unwrap_or(&Value::Null);
            format!("a person is asked ({}): {}", s(i, "kind"), s(i, "prompt"))
        }
        "agent.input_answered" => "the person answered".to_owned(),
        "agent.approval" => {
            let a = d.get("approval").unwrap_or(&Value::Null);
            if a.is_null() {
                "approval answered".to_owned()
            } else {
                format!("approval asked: {}", s(a, "call"))
            }
        }
        "agent.navigation_blocked" => format!("navigation blocked: {}", s(d, "url")),
        "agent.undone" => "undo: the desktop went back to a checkpoint".to_owned(),
        "feedback.requested" => "feedback asked".to_owned(),
        "feedback.answered" => format!("feedback: {}", s(d, "verdict")),
        "secret.typed" => format!("secret typed: {}", s(d, "name")),
        "secret.refused" => format!("secret refused: {}", s(d, "name")),
        "checkpoint.created" => "checkpoint saved".to_owned(),
        "checkpoint.restored" => "checkpoint restored".to_owned(),
        _ => return None,
    };
    Some(clip(t.trim().to_owned()))
}

/// One chapter as written: times relative to the first frame.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Chapter {
    pub start_ms: u64,
    pub end_ms: u64,
    /// Wall-clock time, milliseconds since the epoch.
    pub unix_ms: u64,
    pub kind: String,
    pub title: String,
}

/// An interval with no frames, relative to the first frame and in wall-clock time.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Paused {
    pub from_ms: u64,
    pub to_ms: u64,
    pub from_unix_ms: u64,
    pub to_unix_ms: u64,
    pub reason: String,
}

/// The sidecar JSON of a finished recording (`GET …/recordings/{id}/chapters`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Sidecar {
    pub id: String,
    pub desktop: u32,
    pub fps: u32,
    /// Wall-clock time of the first frame (time 0 of the file).
    pub first_frame_unix_ms: u64,
    pub duration_ms: u64,
    pub stop_reason: Option<String>,
    pub chapters: Vec<Chapter>,
    pub paused: Vec<Paused>,
}

/// The chapters of `rec` over a file of `duration_ms` starting at `first` (wall clock): a
/// "recording started" chapter at 0, one per recorded event and per pause (which ends where
/// capture resumed), each ending where the next begins. Events at the same millisecond share a
/// chapter.
pub fn layout(rec: &RecordingRecord, first: u64, duration_ms: u64) -> Sidecar {
    let mut marks: Vec<RecordingChapter> = rec.chapters.clone();
    marks.push(RecordingChapter {
        unix_ms: first,
        kind: "recording.started".into(),
        title: "recording started".into(),
    });
    let paused: Vec<Paused> = rec
        .pauses
        .iter()
        .map(|p| pause_span(p, first, duration_ms))
        .collect();
    for p in &paused {
        marks.push(RecordingChapter {
            unix_ms: p.from_unix_ms,
            kind: "paused".into(),
            title: clip(format!("paused, no frames: {}", p.reason)),
        });
        if p.to_ms < duration_ms {
            marks.push(RecordingChapter {
                unix_ms: p.to_unix_ms,
                kind: "resumed".into(),
                title: "recording resumed".into(),
            });
        }
    }
    marks.sort_by_key(|m| m.unix_ms.max(first));
    let mut chapters: Vec<Chapter> = Vec::new();
    for m in marks {
        let mut start = m.unix_ms.saturating_sub(first);
        if m.kind == "paused" && start >= duration_ms {
            // Stopped while paused: the file ends where the pause began; its last moment
            // says so.
            start = duration_ms.saturating_sub(1);
        }
        if start >= duration_ms && !chapters.is_empty() {
            continue;
        }
        match chapters.last_mut() {
            Some(last) if last.start_ms == start => {
                last.title = clip(format!("{}; {}", last.title, m.title));
            }
            _ => chapters.push(Chapter {
                start_ms: start,
                end_ms: duration_ms,
                unix_ms: m.unix_ms.max(first),
                kind: m.kind,
                title: m.title,
            }),
        }
    }
    for i in 1..chapters.len() {
        let next = chapters[i].start_ms;
        chapters[i - 1].end_ms = next;
    }
    if let Some(last) = chapters.last_mut() {
        last.end_ms = last.end_ms.max(last.start_ms);
    }
    Sidecar {
        id: rec.id.clone(),
        desktop: rec.desktop,
        fps: rec.fps,
        first_frame_unix_ms: first,
        duration_ms,
        stop_reason: rec.stop_reason.clone(),
        chapters,
        paused,
    }
}

fn pause_span(p: &RecordingPause, first: u64, duration_ms: u64) -> Paused {
    let end = first + duration_ms;
    let to = p.to_ms.unwrap_or(end).min(end).max(p.from_ms);
    Paused {
        from_ms: p.from_ms.saturating_sub(first),
        to_ms: to.saturating_sub(first),
        from_unix_ms: p.from_ms,
        to_unix_ms: to,
        reason: p.reason.clone(),
    }
}

/// Escapes a value for FFMETADATA (`=`, `;`, `#`, `\` and newlines get a backslash).
fn escape(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '=' | ';' | '#' | '\\' => {
                o.push('\\');
                o.push(c);
            }
            '\n' | '\r' => o.push(' '),
            c if c.is_control() => {}
            c => o.push(c),
        }
    }
    o
}

/// The FFMETADATA file muxed into the MP4 at finalize (`-map_chapters`).
pub fn ffmetadata(side: &Sidecar) -> String {
    let mut o = String::from(";FFMETADATA1\n");
    o.push_str(&format!(
        "title={}\n",
        escape(&format!("zigral desktop {} ({})", side.desktop, side.id))
    ));
    for c in &side.chapters {
        o.push_str(&format!(
            "\n[CHAPTER]\nTIMEBASE=1/1000\nSTART={}\nEND={}\ntitle={}\n",
            c.start_ms,
            c.end_ms.max(c.start_ms),
            escape(&c.title)
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use zigral_store::RecordingState;

    fn rec(chapters: Vec<(u64, &str)>, pauses: Vec<(u64, Option<u64>)>) -> RecordingRecord {
        RecordingRecord {
            id: "rec-1".into(),
            desktop: 0,
            owner: "u".into(),
            state: RecordingState::Finalizing,
            fps: 10,
            max_mb: 10,
            max_secs: 60,
            started_at: 900,
            first_frame_ms: Some(1000),
            stopped_at: Some(9000),
            finished_at: None,
            stop_reason: Some("stopped".into()),
            size_bytes: None,
            duration_ms: None,
            chapters: chapters
                .into_iter()
                .map(|(t, title)| RecordingChapter {
                    unix_ms: t,
                    kind: "agent.step".into(),
                    title: title.into(),
                })
                .collect(),
            pauses: pauses
                .into_iter()
                .map(|(f, t)| RecordingPause {
                    from_ms: f,
                    to_ms: t,
                    reason: "secret typed: bank".into(),
                })
                .collect(),
            error: None,
        }
    }

    #[test]
    fn chapters_tile_the_file_and_pauses_become_chapters() {
        let r = rec(
            vec![
                (2000, "step 1"),
                (2000, "step 1b"),
                (7000, "step 2"),
                (20000, "late"),
            ],
            vec![(3000, Some(5000))],
        );
        let side = layout(&r, 1000, 8000);
        let got: Vec<(u64, u64, &str)> = side
            .chapters
            .iter()
            .map(|c| (c.start_ms, c.end_ms, c.title.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 1000, "recording started"),
                (1000, 2000, "step 1; step 1b"),
                (2000, 4000, "paused, no frames: secret typed: bank"),
                (4000, 6000, "recording resumed"),
                (6000, 8000, "step 2"),
            ]
        );
        assert_eq!(side.paused[0].from_ms, 2000);
        assert_eq!(side.paused[0].to_ms, 4000);
    }

    #[test]
    fn an_open_pause_runs_to_the_end() {
        let r = rec(vec![], vec![(4000, None)]);
        let side = layout(&r, 1000, 3000);
        assert_eq!(side.paused[0].to_ms, 3000);
        assert_eq!(
            side.chapters.last().map(|c| c.kind.as_str()),
            Some("paused")
        );
    }

    #[test]
    fn ffmetadata_escapes_titles() {
        let r = rec(vec![(1500, "type a=b; #1 \\ x\ny")], vec![]);
        let m = ffmetadata(&layout(&r, 1000, 2000));
        assert!(m.starts_with(";FFMETADATA1\n"));
        assert!(m.contains("title=type a\\=b\\; \\#1 \\\\ x y\n"), "{m}");
        assert!(m.contains("START=500\nEND=2000\n"), "{m}");
    }

    #[test]
    fn event_titles() {
        let ev = |kind: &str, data| Event::new(kind, Some("s"), Some("u"), data);
        assert_eq!(
            title(&ev(
                "agent.step",
                json!({"n": 3, "call": "click(10, 20)", "ok": true})
            ))
            .as_deref(),
            Some("agent step 3: click(10, 20)")
        );
        assert_eq!(
            title(&ev(
                "session.control",
                json!({"change": "taken", "holder": {"user_name": "alice"}})
            ))
            .as_deref(),
            Some("control taken by alice")
        );
        assert_eq!(
            title(&ev(
                "agent.input_requested",
                json!({"input": {"kind": "2fa", "prompt": "code please"}})
            ))
            .as_deref(),
            Some("a person is asked (2fa): code please")
        );
        assert_eq!(title(&ev("message.appended", json!({}))), None);
        let long = "x".repeat(500);
        let t = title(&ev("secret.typed", json!({"name": long}))).unwrap_or_default();
        assert_eq!(t.chars().count(), MAX_TITLE);
    }
}
