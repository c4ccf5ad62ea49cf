//! View-only enforcement: a streaming parser of the client→server RFB stream (RFC 6143 plus
//! the common extensions) that forwards what a watcher needs and drops every input message.
//!
//! Forwarded: the handshake (version, security type choice, VNC-auth response, ClientInit with
//! the shared flag forced on so a viewer cannot disconnect others), SetPixelFormat,
//! SetEncodings, FramebufferUpdateRequest, EnableContinuousUpdates, ClientFence and QEMU audio.
//! Dropped: KeyEvent, PointerEvent, ClientCutText (incl. extended clipboard), QEMU extended key
//! events, SetDesktopSize, xvp (power actions) and gii input. Anything else — an unknown
//! message type, an RFB version before 3.7, an unsupported security type — is an error and the
//! connection is closed, because the parser cannot know where the next message starts.
//!
//! A *gated* filter ([`ViewOnlyFilter::gated`]) serves a `control` connection whose input may be
//! switched off and on while it runs (someone else took control of the desktop, then released
//! it): it parses the same way but forwards input messages while input is allowed
//! ([`ViewOnlyFilter::set_allow_input`]). Where it cannot parse while input is allowed it
//! stops parsing and passes every byte on (a control connection is never refused for an
//! extension the parser does not know); such a stream cannot be demoted later, so when input
//! is switched off the filter fails with [`RfbError::Untracked`] and the connection ends.

use bytes::BytesMut;

/// Why the client→server RFB stream was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RfbError {
    #[error("not an RFB protocol version: {0:?}")]
    Version(String),
    #[error("RFB version {0} is not supported for view-only connections (3.7 or later needed)")]
    OldVersion(String),
    #[error("security type {0} is not supported for view-only connections")]
    Security(u8),
    #[error("unknown RFB client message type {0}")]
    UnknownMessage(u8),
    #[error("unknown QEMU client message subtype {0}")]
    UnknownQemu(u8),
    #[error("malformed RFB client message")]
    Malformed,
    #[error(
        "someone else took control of this desktop and this connection's RFB stream cannot be \
         made view-only; reconnect to watch"
    )]
    Untracked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Collecting the 12-byte ProtocolVersion.
    Version,
    /// Collecting the 1-byte security type choice.
    SecurityType,
    /// Passing the 16-byte VNC authentication response.
    VncAuth,
    /// Collecting the 1-byte ClientInit.
    ClientInit,
    /// Normal messages.
    Messages,
}

/// Counts of what the filter did, for stream health.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FilterCounts {
    pub forwarded_messages: u64,
    pub dropped_messages: u64,
}

/// The view-only filter for one connection.
#[derive(Debug)]
pub struct ViewOnlyFilter {
    phase: Phase,
    /// The head of the current message (or handshake item) until its length is known.
    head: [u8; 24],
    have: usize,
    /// Bytes of the current message body still to pass (`forward`) or skip.
    body_left: u64,
    forward: bool,
    counts: FilterCounts,
    /// Input messages are forwarded (a gated filter while its connection may send input).
    allow_input: bool,
    /// A gated filter: on a parse error while input is allowed, pass everything through.
    gated: bool,
    /// Parsing stopped (see `gated`): every byte passes while input is allowed.
    untracked: bool,
}

impl Default for ViewOnlyFilter {
    fn default() -> Self {
        Self::new()
    }
}

/// How much of a message head is needed, or what the whole message is.
enum Need {
    Head(usize),
    /// Total message length (head included) and whether it is forwarded.
    Message(u64, bool),
}

impl ViewOnlyFilter {
    pub fn new() -> Self {
        ViewOnlyFilter {
            phase: Phase::Version,
            head: [0; 24],
            have: 0,
            body_left: 0,
            forward: false,
            counts: FilterCounts::default(),
            allow_input: false,
            gated: false,
            untracked: false,
        }
    }

    /// A filter for a connection whose input can be switched off and on while it runs
    /// (module docs); `allow_input` is the initial state.
    pub fn gated(allow_input: bool) -> Self {
        ViewOnlyFilter {
            allow_input,
            gated: true,
            ..Self::new()
        }
    }

    /// Whether input messages are forwarded from now on (takes effect at the next message;
    /// one already half-forwarded is finished).
    pub fn set_allow_input(&mut self, allow: bool) {
        self.allow_input = allow;
    }

    /// Whether input messages are forwarded.
    pub fn allows_input(&self) -> bool {
        self.allow_input
    }

    pub fn counts(&self) -> FilterCounts {
        self.counts
    }

    /// Feeds client bytes; appends what may reach the VNC server to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), RfbError> {
        if self.untracked {
            if !self.allow_input {
                return Err(RfbError::Untracked);
            }
            out.extend_from_slice(input);
            return Ok(());
        }
        let mut rest = input;
        match self.parse(&mut rest, out) {
            Err(_) if self.gated && self.allow_input => {
                // Pass on the head held back so far and the rest, unparsed, from now on.
                self.untracked = true;
                out.extend_from_slice(&self.head[..self.have]);
                out.extend_from_slice(rest);
                Ok(())
            }
            r => r,
        }
    }

    /// Parses `input`, advancing it past what was consumed (on an error it holds the bytes
    /// not yet looked at; the message head so far is in `head`).
    fn parse(&mut self, input: &mut &[u8], out: &mut BytesMut) -> Result<(), RfbError> {
        while !input.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(input.len() as u64) as usize;
                if self.forward {
                    out.extend_from_slice(&input[..n]);
                }
                self.body_left -= n as u64;
                *input = &input[n..];
                continue;
            }
            // Grow the head one step at a time until its length is known.
            let need = self.need()?;
            match need {
                Need::Head(n) => {
                    let take = (n - self.have).min(input.len());
                    self.head[self.have..self.have + take].copy_from_slice(&input[..take]);
                    self.have += take;
                    *input = &input[take..];
                }
                Need::Message(total, fwd) => {
                    self.finish_head(total, fwd, out);
                }
            }
        }
        // A message whose head is complete but has no body is finished without more input.
        if self.body_left == 0
            && self.have > 0
            && let Need::Message(total, fwd) = self.need()?
        {
            self.finish_head(total, fwd, out);
        }
        Ok(())
    }

    fn finish_head(&mut self, total: u64, fwd: bool, out: &mut BytesMut) {
        // Every message the parser does not forward on its own is input.
        let fwd = fwd || (self.allow_input && self.phase == Phase::Messages);
        let head_len = self.have;
        self.advance_phase();
        if fwd {
            out.extend_from_slice(&self.head[..head_len]);
            self.counts.forwarded_messages += 1;
        } else {
            self.counts.dropped_messages += 1;
        }
        self.forward = fwd;
        self.body_left = total - head_len as u64;
        self.have = 0;
    }

    fn advance_phase(&mut self) {
        self.phase = match self.phase {
            Phase::Version => Phase::SecurityType,
            Phase::SecurityType => {
                if self.head[0] == 2 {
                    Phase::VncAuth
                } else {
                    Phase::ClientInit
                }
            }
            Phase::VncAuth => Phase::ClientInit,
            Phase::ClientInit | Phase::Messages => Phase::Messages,
        };
    }

    fn need(&mut self) -> Result<Need, RfbError> {
        let h = &self.head[..self.have];
        let head = |n: usize| -> Result<Option<Need>, RfbError> {
            Ok((h.len() < n).then_some(Need::Head(n)))
        };
        match self.phase {
            Phase::Version => {
                if let Some(n) = head(12)? {
                    return Ok(n);
                }
                let v = String::from_utf8_lossy(h).into_owned();
                let ok = h.starts_with(b"RFB ")
                    && h[11] == b'\n'
                    && h[7] == b'.'
                    && h[4..7].iter().chain(&h[8..11]).all(u8::is_ascii_digit);
                if !ok {
                    return Err(RfbError::Version(v));
                }
                let major: u32 = v[4..7].parse().map_err(|_| RfbError::Version(v.clone()))?;
                let minor: u32 = v[8..11].parse().map_err(|_| RfbError::Version(v.clone()))?;
                if major < 3 || (major == 3 && minor < 7) {
                    return Err(RfbError::OldVersion(v.trim_end().to_owned()));
                }
                Ok(Need::Message(12, true))
            }
            Phase::SecurityType => {
                if let Some(n) = head(1)? {
                    return Ok(n);
                }
                match h[0] {
                    1 | 2 => Ok(Need::Message(1, true)),
                    t => Err(RfbError::Security(t)),
                }
            }
            Phase::VncAuth => Ok(head(16)?.unwrap_or(Need::Message(16, true))),
            Phase::ClientInit => {
                if let Some(n) = head(1)? {
                    return Ok(n);
                }
                // Force "shared": a watcher must not be able to kick other viewers off.
                self.head[0] = 1;
                Ok(Need::Message(1, true))
            }
            Phase::Messages => {
                if let Some(n) = head(1)? {
                    return Ok(n);
                }
                let t = h[0];
                let msg = |len: u64, fwd: bool| -> Result<Need, RfbError> {
                    Ok(if (h.len() as u64) < len.min(24) {
                        Need::Head(len.min(24) as usize)
                    } else {
                        Need::Message(len, fwd)
                    })
                };
                match t {
                    // SetPixelFormat
                    0 => msg(20, true),
                    // SetEncodings: u8 type, pad, u16 count, s32 × count
                    2 => match head(4)? {
                        Some(n) => Ok(n),
                        None => msg(4 + 4 * u64::from(u16::from_be_bytes([h[2], h[3]])), true),
                    },
                    // FramebufferUpdateRequest
                    3 => msg(10, true),
                    // KeyEvent
                    4 => msg(8, false),
                    // PointerEvent
                    5 => msg(6, false),
                    // ClientCutText: u8, 3 pad, s32 length (negative = extended clipboard)
                    6 => match head(8)? {
                        Some(n) => Ok(n),
                        None => {
                            let len = i32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                            msg(8 + u64::from(len.unsigned_abs()), false)
                        }
                    },
                    // EnableContinuousUpdates
                    150 => msg(10, true),
                    // ClientFence: u8, 3 pad, u32 flags, u8 length, payload ≤ 64
                    248 => match head(9)? {
                        Some(n) => Ok(n),
                        None if h[8] > 64 => Err(RfbError::Malformed),
                        None => msg(9 + u64::from(h[8]), true),
                    },
                    // xvp: u8, pad, version, code (shutdown / reboot / reset)
                    250 => msg(4, false),
                    // SetDesktopSize: u8, pad, u16 w, u16 h, u8 screens, pad, 16 × screens
                    251 => match head(8)? {
                        Some(n) => Ok(n),
                        None => msg(8 + 16 * u64::from(h[6]), false),
                    },
                    // gii: u8, u8 endian+subtype, u16 length, payload
                    253 => match head(4)? {
                        Some(n) => Ok(n),
                        None => {
                            let be = h[1] & 0x80 != 0;
                            let b = [h[2], h[3]];
                            let len = if be {
                                u16::from_be_bytes(b)
                            } else {
                                u16::from_le_bytes(b)
                            };
                            msg(4 + u64::from(len), false)
                        }
                    },
                    // QEMU client messages
                    255 => match head(2)? {
                        Some(n) => Ok(n),
                        // extended key event
                        None if h[1] == 0 => msg(12, false),
                        // audio: u16 operation; 2 = set format (+ u8 fmt, u8 channels, u32 freq)
                        None if h[1] == 1 => match head(4)? {
                            Some(n) => Ok(n),
                            None => match u16::from_be_bytes([h[2], h[3]]) {
                                0 | 1 => msg(4, true),
                                2 => msg(10, true),
                                _ => Err(RfbError::Malformed),
                            },
                        },
                        None => Err(RfbError::UnknownQemu(h[1])),
                    },
                    t => Err(RfbError::UnknownMessage(t)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake() -> Vec<u8> {
        let mut v = b"RFB 003.008\n".to_vec();
        v.push(1); // security None
        v.push(0); // ClientInit, not shared
        v
    }

    fn messages() -> (Vec<u8>, Vec<u8>) {
        let mut all = Vec::new();
        let mut kept = Vec::new();
        let mut push = |m: &[u8], keep: bool| {
            all.extend_from_slice(m);
            if keep {
                kept.extend_from_slice(m);
            }
        };
        let mut spf = vec![0u8; 20];
        spf[4] = 32;
        push(&spf, true);
        push(&[2, 0, 0, 2, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0x21], true);
        push(&[3, 1, 0, 0, 0, 0, 4, 0, 3, 0], true);
        push(&[4, 1, 0, 0, 0, 0, 0, 0x61], false);
        push(&[5, 1, 0, 10, 0, 20], false);
        push(&[6, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c'], false);
        push(&[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xfc, 1, 2, 3, 4], false);
        push(&[150, 1, 0, 0, 0, 0, 4, 0, 3, 0], true);
        push(&[248, 0, 0, 0, 0, 0, 0, 1, 2, 9, 9], true);
        push(&[250, 0, 1, 2], false);
        push(
            &[
                251, 0, 4, 0, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 3, 0, 0, 0, 0, 0,
            ],
            false,
        );
        push(&[253, 0x80, 0, 2, 7, 7], false);
        push(&[255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 30], false);
        push(&[255, 1, 0, 2, 3, 2, 0, 0, 0xac, 0x44], true);
        push(&[3, 1, 0, 0, 0, 0, 4, 0, 3, 0], true);
        (all, kept)
    }

    #[test]
    fn keeps_view_messages_drops_input_in_any_split() {
        let (msgs, kept) = messages();
        let mut input = handshake();
        input.extend(&msgs);
        let mut expect = b"RFB 003.008\n\x01\x01".to_vec();
        expect.extend(&kept);
        for chunk in [1usize, 2, 3, 5, 7, 64, 10_000] {
            let mut f = ViewOnlyFilter::new();
            let mut out = BytesMut::new();
            for c in input.chunks(chunk) {
                f.feed(c, &mut out).unwrap();
            }
            assert_eq!(&out[..], &expect[..], "chunk size {chunk}");
            assert_eq!(f.counts().dropped_messages, 8);
        }
    }

    #[test]
    fn vnc_auth_response_passes() {
        let mut input = b"RFB 003.008\n\x02".to_vec();
        input.extend([7u8; 16]);
        input.push(1);
        input.extend([5, 0, 0, 1, 0, 1]);
        let mut f = ViewOnlyFilter::new();
        let mut out = BytesMut::new();
        f.feed(&input, &mut out).unwrap();
        assert_eq!(&out[..], &input[..input.len() - 6]);
    }

    #[test]
    fn refuses_what_it_cannot_parse() {
        let cases: Vec<(Vec<u8>, RfbError)> = vec![
            (
                b"GET / HTTP/1.1\r\n".to_vec(),
                RfbError::Version("GET / HTTP/1".into()),
            ),
            (
                b"RFB 003.003\n".to_vec(),
                RfbError::OldVersion("RFB 003.003".into()),
            ),
            (b"RFB 003.008\n\x13".to_vec(), RfbError::Security(19)),
            ([handshake(), vec![7]].concat(), RfbError::UnknownMessage(7)),
            (
                [handshake(), vec![255, 9]].concat(),
                RfbError::UnknownQemu(9),
            ),
        ];
        for (input, want) in cases {
            let mut out = BytesMut::new();
            assert_eq!(ViewOnlyFilter::new().feed(&input, &mut out), Err(want));
        }
    }

    #[test]
    fn a_gated_filter_switches_input_off_and_on_at_message_boundaries() {
        let (msgs, kept) = messages();
        let hs = handshake();
        let hs_out = b"RFB 003.008\n\x01\x01".to_vec();
        for chunk in [1usize, 3, 64, 10_000] {
            // Allowed: everything passes (ClientInit still forced shared).
            let mut f = ViewOnlyFilter::gated(true);
            let mut out = BytesMut::new();
            for c in [hs.clone(), msgs.clone()].concat().chunks(chunk) {
                f.feed(c, &mut out).unwrap();
            }
            assert_eq!(
                &out[..],
                &[hs_out.clone(), msgs.clone()].concat()[..],
                "{chunk}"
            );
            assert_eq!(f.counts().dropped_messages, 0);
            // Switched off: input is dropped like a view-only filter's.
            f.set_allow_input(false);
            out.clear();
            for c in msgs.chunks(chunk) {
                f.feed(c, &mut out).unwrap();
            }
            assert_eq!(&out[..], &kept[..], "{chunk}");
            // And on again.
            f.set_allow_input(true);
            out.clear();
            for c in msgs.chunks(chunk) {
                f.feed(c, &mut out).unwrap();
            }
            assert_eq!(&out[..], &msgs[..], "{chunk}");
        }
    }

    #[test]
    fn a_gated_filter_passes_what_it_cannot_parse_until_input_is_switched_off() {
        let mut f = ViewOnlyFilter::gated(true);
        let mut out = BytesMut::new();
        let input = [handshake(), vec![5, 0, 0, 1, 0, 1], vec![77, 1, 2, 3]].concat();
        f.feed(&input, &mut out).unwrap();
        let mut want = b"RFB 003.008\n\x01\x01".to_vec();
        want.extend([5, 0, 0, 1, 0, 1, 77, 1, 2, 3]);
        assert_eq!(&out[..], &want[..], "an unknown message passes, whole");
        f.feed(&[4, 1, 0, 0], &mut out).unwrap();
        assert!(out.ends_with(&[4, 1, 0, 0]));
        f.set_allow_input(false);
        assert_eq!(f.feed(&[5], &mut out), Err(RfbError::Untracked));
        // A gated filter without input refuses what it cannot parse, like a view-only one.
        let mut f = ViewOnlyFilter::gated(false);
        let input = [handshake(), vec![77]].concat();
        assert_eq!(f.feed(&input, &mut out), Err(RfbError::UnknownMessage(77)));
    }
}
