//! RFC 6455 framing for the relay: a streaming decoder for client frames (strict: masked,
//! no reserved bits, bounded, well-formed control frames) and server frame headers.
//!
//! Frames are not reassembled into messages: the relayed RFB stream has no message
//! boundaries, so each payload chunk is unmasked in place and handed on as soon as it arrives.
//! Memory per connection therefore does not depend on frame size.

use bytes::{Buf, BytesMut};

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes we send.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const UNSUPPORTED: u16 = 1003;
    pub const BAD_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
}

/// A client broke the WebSocket protocol; the connection is closed with [`Self::code`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("reserved bits set (no extension was negotiated)")]
    Reserved,
    #[error("unknown opcode {0:#x}")]
    Opcode(u8),
    #[error("client frame is not masked")]
    Unmasked,
    #[error("control frame is fragmented or longer than 125 bytes")]
    BadControl,
    #[error("frame of {0} bytes exceeds the limit")]
    TooBig(u64),
    #[error("text frames are not supported (binary subprotocol only)")]
    Text,
    #[error("continuation frame outside a message, or a new message inside one")]
    Continuation,
    #[error("malformed close frame")]
    BadClose,
    #[error("close reason is not UTF-8")]
    CloseUtf8,
}

impl ProtocolError {
    /// The close code that reports this error to the client.
    pub fn code(&self) -> u16 {
        match self {
            ProtocolError::TooBig(_) => close::TOO_BIG,
            ProtocolError::Text => close::UNSUPPORTED,
            ProtocolError::CloseUtf8 => close::BAD_DATA,
            _ => close::PROTOCOL,
        }
    }
}

/// What the decoder found in the client's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Unmasked payload bytes of a binary message (any fragment, any part of a frame).
    Data(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// The client closes: status code (1005 when none was given).
    Close(u16),
}

#[derive(Debug, Clone, Copy)]
enum State {
    Header,
    Payload {
        mask: [u8; 4],
        remaining: u64,
        offset: usize,
        fin: bool,
    },
    Control {
        opcode: u8,
        mask: [u8; 4],
        len: usize,
    },
}

/// Streaming decoder of client→server frames.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    in_message: bool,
    max_frame: u64,
    /// Data frames started so far (for stream health).
    pub frames: u64,
}

impl Decoder {
    pub fn new(max_frame: u64) -> Self {
        Decoder {
            state: State::Header,
            in_message: false,
            max_frame,
            frames: 0,
        }
    }

    /// True while a frame or fragmented message is only partly received.
    pub fn mid_frame(&self) -> bool {
        !matches!(self.state, State::Header) || self.in_message
    }

    /// Consumes as much of `buf` as forms events, calling `on` for each; bytes of an incomplete
    /// header or control frame stay in `buf`. Stops at the first error (from the protocol or
    /// from `on`); after a `Close` event nothing more is decoded.
    pub fn decode<E: From<ProtocolError>>(
        &mut self,
        buf: &mut BytesMut,
        mut on: impl FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<bool, E> {
        loop {
            match self.state {
                State::Header => {
                    let Some((h, used)) = parse_header(buf, self.max_frame)? else {
                        return Ok(false);
                    };
                    buf.advance(used);
                    match h.opcode {
                        OP_CLOSE | OP_PING | OP_PONG => {
                            self.state = State::Control {
                                opcode: h.opcode,
                                mask: h.mask,
                                len: h.len as usize,
                            };
                        }
                        OP_TEXT => return Err(ProtocolError::Text.into()),
                        op => {
                            if (op == OP_CONT) != self.in_message {
                                return Err(ProtocolError::Continuation.into());
                            }
                            self.in_message = !h.fin;
                            self.frames += 1;
                            if h.len > 0 {
                                self.state = State::Payload {
                                    mask: h.mask,
                                    remaining: h.len,
                                    offset: 0,
                                    fin: h.fin,
                                };
                            }
                        }
                    }
                }
                State::Payload {
                    mask,
                    remaining,
                    offset,
                    fin,
                } => {
                    let n = remaining.min(buf.len() as u64) as usize;
                    if n == 0 {
                        return Ok(false);
                    }
                    let chunk = &mut buf[..n];
                    unmask(chunk, mask, offset);
                    on(Event::Data(chunk))?;
                    buf.advance(n);
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        let _ = fin;
                        State::Header
                    } else {
                        State::Payload {
                            mask,
                            remaining,
                            offset: offset + n,
                            fin,
                        }
                    };
                }
                State::Control { opcode, mask, len } => {
                    if buf.len() < len {
                        return Ok(false);
                    }
                    let payload = &mut buf[..len];
                    unmask(payload, mask, 0);
                    self.state = State::Header;
                    match opcode {
                        OP_PING => on(Event::Ping(payload))?,
                        OP_PONG => on(Event::Pong(payload))?,
                        _ => {
                            let code = parse_close(payload)?;
                            buf.advance(len);
                            on(Event::Close(code))?;
                            return Ok(true);
                        }
                    }
                    buf.advance(len);
                }
            }
        }
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub mask: [u8; 4],
    pub len: u64,
}

/// Parses a client frame header; `Ok(None)` if `buf` does not hold all of it yet.
pub fn parse_header(buf: &[u8], max_frame: u64) -> Result<Option<(Header, usize)>, ProtocolError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(ProtocolError::Reserved);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin || (b1 & 0x7f) > 125 {
                return Err(ProtocolError::BadControl);
            }
        }
        op => return Err(ProtocolError::Opcode(op)),
    }
    if b1 & 0x80 == 0 {
        return Err(ProtocolError::Unmasked);
    }
    let (len, at) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    if len > max_frame {
        return Err(ProtocolError::TooBig(len));
    }
    if buf.len() < at + 4 {
        return Ok(None);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    Ok(Some((
        Header {
            fin,
            opcode,
            mask,
            len,
        },
        at + 4,
    )))
}

fn parse_close(payload: &[u8]) -> Result<u16, ProtocolError> {
    match payload.len() {
        0 => Ok(1005),
        1 => Err(ProtocolError::BadClose),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(ProtocolError::BadClose);
            }
            std::str::from_utf8(&payload[2..]).map_err(|_| ProtocolError::CloseUtf8)?;
            Ok(code)
        }
    }
}

/// XORs `data` with the 4-byte `mask`, `offset` bytes into the frame's payload.
pub fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut m = [0u8; 4];
    for (i, b) in m.iter_mut().enumerate() {
        *b = mask[(offset + i) % 4];
    }
    let word = u32::from_ne_bytes(m);
    let wide = u64::from(word) | (u64::from(word) << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let v = u64::from_ne_bytes(w) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

/// Writes an unmasked server frame header (FIN set) for a payload of `len` bytes into `out`;
/// returns the header length (2, 4 or 10).
pub fn server_header(opcode: u8, len: usize, out: &mut [u8; 10]) -> usize {
    out[0] = 0x80 | opcode;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= 0xffff {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// A complete close frame (code and a short reason) as the server sends it.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(120)];
    let mut f = vec![0x80 | OP_CLOSE, (2 + reason.len()) as u8];
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(reason);
    f
}

/// Computes `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(fin: bool, op: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | op];
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n <= 0xffff {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        let mut p = payload.to_vec();
        unmask(&mut p, mask, 0);
        f.extend_from_slice(&p);
        f
    }

    fn collect(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<String>, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        d.decode::<ProtocolError>(&mut buf, |e| {
            out.push(format!("{e:?}"));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn accept_key_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn unmask_any_offset() {
        let data: Vec<u8> = (0..37u8).collect();
        let mask = [1, 2, 3, 4];
        let mut whole = data.clone();
        unmask(&mut whole, mask, 0);
        let mut parts = data.clone();
        let (a, b) = parts.split_at_mut(13);
        unmask(a, mask, 0);
        unmask(b, mask, 13);
        assert_eq!(whole, parts);
        unmask(&mut whole, mask, 0);
        assert_eq!(whole, data);
    }

    #[test]
    fn streams_payload_byte_by_byte() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let f = client_frame(true, OP_BINARY, &payload, [9, 8, 7, 6]);
        let mut d = Decoder::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in f {
            buf.extend_from_slice(&[b]);
            d.decode::<ProtocolError>(&mut buf, |e| {
                if let Event::Data(x) = e {
                    got.extend_from_slice(x);
                }
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(got, payload);
        assert!(!d.mid_frame());
    }

    #[test]
    fn fragments_and_control_interleave() {
        let mut bytes = client_frame(false, OP_BINARY, b"ab", [1, 1, 1, 1]);
        bytes.extend(client_frame(true, OP_PING, b"hi", [2, 2, 2, 2]));
        bytes.extend(client_frame(true, OP_CONT, b"cd", [3, 3, 3, 3]));
        bytes.extend(client_frame(true, OP_CLOSE, &1000u16.to_be_bytes(), [4; 4]));
        let ev = collect(&mut Decoder::new(100), &bytes).unwrap();
        assert_eq!(
            ev,
            [
                "Data([97, 98])",
                "Ping([104, 105])",
                "Data([99, 100])",
                "Close(1000)"
            ]
        );
    }

    #[test]
    fn strictness() {
        let mut unmasked = client_frame(true, OP_BINARY, b"x", [0; 4]);
        unmasked[1] &= 0x7f;
        unmasked.truncate(2);
        unmasked.push(b'x');
        let cases: Vec<(Vec<u8>, ProtocolError)> = vec![
            (unmasked, ProtocolError::Unmasked),
            (vec![0xC2, 0x80, 0, 0, 0, 0], ProtocolError::Reserved),
            (vec![0x83, 0x80, 0, 0, 0, 0], ProtocolError::Opcode(3)),
            (
                client_frame(true, OP_TEXT, b"x", [1; 4]),
                ProtocolError::Text,
            ),
            (
                client_frame(true, OP_CONT, b"x", [1; 4]),
                ProtocolError::Continuation,
            ),
            (
                client_frame(false, OP_PING, b"x", [1; 4]),
                ProtocolError::BadControl,
            ),
            (
                client_frame(true, OP_CLOSE, b"x", [1; 4]),
                ProtocolError::BadClose,
            ),
            (
                client_frame(true, OP_CLOSE, &999u16.to_be_bytes(), [1; 4]),
                ProtocolError::BadClose,
            ),
            (
                vec![0x82, 0xFF, 0, 0, 0, 0x10, 0, 0, 0, 0],
                ProtocolError::TooBig(1 << 36),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(collect(&mut Decoder::new(1 << 20), &bytes), Err(want));
        }
        // a new message while one is open
        let mut two = client_frame(false, OP_BINARY, b"a", [1; 4]);
        two.extend(client_frame(true, OP_BINARY, b"b", [1; 4]));
        assert_eq!(
            collect(&mut Decoder::new(10), &two),
            Err(ProtocolError::Continuation)
        );
    }

    #[test]
    fn headers() {
        let mut h = [0u8; 10];
        assert_eq!(server_header(OP_BINARY, 5, &mut h), 2);
        assert_eq!(&h[..2], &[0x82, 5]);
        assert_eq!(server_header(OP_BINARY, 300, &mut h), 4);
        assert_eq!(&h[..4], &[0x82, 126, 1, 44]);
        assert_eq!(server_header(OP_BINARY, 70000, &mut h), 10);
        assert_eq!(h[1], 127);
    }
}
