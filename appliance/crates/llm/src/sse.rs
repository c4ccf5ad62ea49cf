//! Server-sent events: an incremental parser (bytes in, frames out) for reading provider streams,
//! and [`frame`], the writer the fake provider server uses to emit the same bytes.
//!
//! The parser follows the HTML living standard's event-stream rules as far as the providers use
//! them: lines end in LF, CRLF or CR; `event:` names the frame; several `data:` lines are joined
//! with `\n`; lines starting with `:` are comments (keep-alives); a blank line dispatches the frame;
//! a frame with no `data:` line is dropped. `id:` and `retry:` are accepted and ignored. The
//! OpenAI-style `data: [DONE]` terminator comes out as an ordinary frame ([`Frame::is_done`]).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The `event:` name, if the frame had one.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

impl Frame {
    /// Whether this is the OpenAI stream terminator `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data == "[DONE]"
    }
}

/// An incremental parser: feed it chunks as they arrive, in any split.
#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting the next chunk belongs to it.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Consumes `bytes` and returns the frames completed by them, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                _ => self.line.push(b),
            }
        }
        out
    }

    /// Ends the stream: a last frame that was not followed by a blank line is still dispatched.
    pub fn finish(&mut self) -> Option<Frame> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut out);
        }
        self.end_line(&mut out);
        out.pop()
    }

    fn end_line(&mut self, out: &mut Vec<Frame>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                out.push(Frame {
                    event: self.event.take(),
                    data,
                });
            } else {
                self.event = None;
            }
            return;
        }
        let line = String::from_utf8_lossy(&line);
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
    }
}

/// Renders one SSE frame: an optional `event:` line, one `data:` line per line of `data`, and
/// the blank line that dispatches it.
pub fn frame(event: Option<&str>, data: &str) -> String {
    let mut s = String::with_capacity(data.len() + 32);
    if let Some(e) = event {
        s.push_str("event: ");
        s.push_str(e);
        s.push('\n');
    }
    for line in data.split('\n') {
        s.push_str("data: ");
        s.push_str(line.strip_suffix('\r').unwrap_or(line));
        s.push('\n');
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(event: Option<&str>, data: &str) -> Frame {
        Frame {
            event: event.map(str::to_string),
            data: data.to_string(),
        }
    }

    #[test]
    fn frames_split_at_every_byte_boundary_parse_the_same() {
        let stream = "event: message_start\ndata: {\"a\":1}\n\n: ping comment\n\
                      event: ping\r\ndata: {}\r\n\r\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";
        let want = vec![
            f(Some("message_start"), "{\"a\":1}"),
            f(Some("ping"), "{}"),
            f(None, "line1\nline2"),
            f(None, "[DONE]"),
        ];
        let mut p = Parser::new();
        assert_eq!(p.feed(stream.as_bytes()), want);
        for split in 1..stream.len() {
            let mut p = Parser::new();
            let (a, b) = stream.as_bytes().split_at(split);
            let mut got = p.feed(a);
            got.extend(p.feed(b));
            assert_eq!(got, want, "split at {split}");
        }
        let mut p = Parser::new();
        let got: Vec<Frame> = stream.bytes().flat_map(|b| p.feed(&[b])).collect();
        assert_eq!(got, want);
        assert!(got[3].is_done());
        assert!(!got[0].is_done());
    }

    #[test]
    fn lone_cr_ends_lines_and_event_without_data_is_dropped() {
        let mut p = Parser::new();
        let got = p.feed(b"event: x\r\revent: y\rdata:no-space\r\r");
        assert_eq!(got, vec![f(Some("y"), "no-space")]);
    }

    #[test]
    fn finish_flushes_an_unterminated_frame() {
        let mut p = Parser::new();
        assert!(p.feed(b"event: e\ndata: tail").is_empty());
        assert_eq!(p.finish(), Some(f(Some("e"), "tail")));
        assert_eq!(p.finish(), None);
    }

    #[test]
    fn writer_output_parses_back() {
        let s = frame(Some("content_block_delta"), "{\"x\":1}\nsecond");
        assert_eq!(
            s,
            "event: content_block_delta\ndata: {\"x\":1}\ndata: second\n\n"
        );
        let mut p = Parser::new();
        let mut bytes = s.into_bytes();
        bytes.extend(frame(None, "[DONE]").into_bytes());
        assert_eq!(
            p.feed(&bytes),
            vec![
                f(Some("content_block_delta"), "{\"x\":1}\nsecond"),
                f(None, "[DONE]")
            ]
        );
    }
}
